#!/usr/bin/env python3
"""Generate a realistic, deterministic HR roster CSV for autoprov tests.

Python 3 standard library only. The same --rows/--seed/--delimiter always
produce byte-identical output (no set/dict-hash ordering, no clock, no locale).

    python3 gen_roster.py --rows 300 --seed 1 --out roster.csv
    python3 gen_roster.py --rows 5000 --seed 7 --out big.csv --delimiter ';'

Columns (in this order):
    Employee ID,First Name,Last Name,Work Email,Department,Job Title,
    Location,Manager ID,Employment Status,Cost Center

Shape of the data:
  * Employee IDs look like E00001 (zero-padded, at least 5 digits). E00001 is
    the CEO (department Operations, empty Manager ID); all other IDs are
    handed out in a shuffled "hiring order", so a manager's ID is often larger
    than their reports' IDs. Rows are written sorted by Employee ID.
  * A real manager tree: CEO -> one VP per department ("VP, <Department>")
    -> people managers -> individual contributors (ICs). Every manager gets at
    least two ICs when the department is big enough.
  * Departments: Engineering, Finance, HR, IT, Sales, Marketing, Legal,
    Operations, Support (weighted, Engineering largest).
  * Locations include non-ASCII names (São Paulo, Zürich); names include
    non-ASCII letters; e-mails are ASCII-folded first.last@acme.example
    (a numeric suffix keeps them unique).
  * About 3% of the rows (ICs only) have Employment Status "Terminated"; about
    half of those have an empty Work Email. Everybody else is "Active".
  * Special cells (whenever there are enough rows): every VP title contains a
    comma ("VP, Finance"), one last name is "King, Jr." (comma), one job title
    is 'Analyst, "Special Projects"' (comma and quotes) and one job title is
    '=HYPERLINK("http://x")' (a formula that must stay plain text). All of
    them need CSV quoting.
"""

import argparse
import csv
import sys
import unicodedata
from random import Random

HEADER = [
    "Employee ID", "First Name", "Last Name", "Work Email", "Department",
    "Job Title", "Location", "Manager ID", "Employment Status", "Cost Center",
]

DOMAIN = "acme.example"

# (department, weight, cost center, manager title, IC titles)
DEPARTMENTS = [
    ("Engineering", 28, "CC-1100", "Engineering Manager",
     ["Software Engineer", "Software Engineer", "Senior Software Engineer",
      "Senior Software Engineer", "Staff Engineer", "QA Engineer",
      "Site Reliability Engineer", "Data Engineer", "Frontend Engineer"]),
    ("Sales", 15, "CC-2100", "Sales Manager",
     ["Account Executive", "Account Executive", "Senior Account Executive",
      "Sales Development Representative", "Solutions Consultant"]),
    ("Support", 12, "CC-3100", "Support Manager",
     ["Support Engineer", "Support Engineer", "Senior Support Engineer",
      "Customer Success Manager", "Support Agent"]),
    ("Operations", 8, "CC-0100", "Operations Manager",
     ["Operations Analyst", "Office Manager", "Procurement Specialist",
      "Facilities Coordinator", "Executive Assistant"]),
    ("Marketing", 8, "CC-2200", "Marketing Manager",
     ["Marketing Specialist", "Content Strategist", "Product Marketing Manager",
      "Designer", "Events Coordinator"]),
    ("Finance", 8, "CC-4100", "Finance Manager",
     ["Accountant", "Senior Accountant", "Financial Analyst",
      "Payroll Specialist", "Accounts Payable Clerk", "Financial Controller"]),
    ("IT", 7, "CC-5100", "IT Manager",
     ["IT Support Specialist", "Systems Administrator", "Network Engineer",
      "Security Analyst", "IT Support Specialist"]),
    ("HR", 5, "CC-4200", "HR Manager",
     ["HR Business Partner", "Recruiter", "HR Generalist",
      "People Operations Specialist", "Talent Acquisition Partner"]),
    ("Legal", 4, "CC-4300", "Legal Manager",
     ["Counsel", "Senior Counsel", "Paralegal", "Compliance Analyst"]),
]

# (location, weight)
LOCATIONS = [
    ("Berlin", 24), ("London", 22), ("New York", 22), ("Singapore", 12),
    ("São Paulo", 12), ("Zürich", 8),
]

FIRST_NAMES = [
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Grace", "Hannah",
    "Ivan", "Julia", "Karim", "Laura", "Marco", "Nina", "Oliver", "Paula",
    "Quentin", "Rosa", "Samuel", "Tara", "Umar", "Vera", "William", "Xin",
    "Yara", "Zoë", "José", "Björn", "Søren", "Łukasz", "Chloé", "Renée",
    "Jürgen", "João", "Aylin", "Mei", "Wei", "Priya", "Arjun", "Kwame",
    "Amara", "Oğuz", "Ingrid", "Matteo", "Sofia", "Lucas", "Emma", "Noah",
    "Mia", "Leon", "Hana", "Kenji", "Aisha", "Tomás", "Inês", "François",
    "Agnieszka", "Dmitri", "Fatima", "Gabriel", "Helga", "Isabel", "Jonas",
    "Katarzyna", "Liam", "Maya", "Nikolai", "Olga", "Pedro", "Rahul",
    "Sara", "Thomas", "Ursula", "Victor", "Wen", "Yusuf", "Zainab",
    "Michael", "Sarah", "James", "Linda", "Robert", "Maria", "Daniel",
]

LAST_NAMES = [
    "Müller", "Schmidt", "García", "Núñez", "Smith", "Johnson", "O'Brien",
    "Nguyen", "Tan", "Lim", "Silva", "Santos", "Gonçalves", "Kowalski",
    "Nowak", "Wiśniewski", "Jørgensen", "Andersson", "Fischer", "Weber",
    "Rossi", "Dubois", "Lefèvre", "Kim", "Park", "Chen", "Wang", "Patel",
    "Sharma", "Okafor", "Mensah", "Cohen", "Levi", "Ivanova", "Brown",
    "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker",
    "Wright", "Hughes", "Clarke", "Ahmed", "Khan", "Ali", "Hassan",
    "Yılmaz", "Öztürk", "Costa", "Pereira", "Oliveira", "Ferreira", "Souza",
    "Lima", "Meyer", "Wagner", "Becker", "Hoffmann", "Schulz", "Koch",
    "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Zimmermann",
    "Krüger", "Hartmann", "Lange", "Werner", "Krause", "Lehmann", "Martin",
    "Bernard", "Moreau", "Laurent", "Fernández", "López", "Martínez",
    "Sánchez", "Pérez", "Gómez", "Suzuki", "Tanaka", "Watanabe", "Singh",
    "Gupta", "Reddy", "Murphy", "Kelly", "Byrne", "Novák", "Horváth",
    "de Vries", "van der Berg", "Jansen", "Bakker", "Nielsen", "Hansen",
    "Larsen", "Berg", "Lindqvist", "Virtanen", "Korhonen", "Papadopoulos",
]

# Letters that NFKD does not decompose to ASCII.
FOLD = {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
        "Æ": "AE", "đ": "d", "Đ": "D", "ı": "i", "œ": "oe", "Œ": "OE",
        "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th"}


def ascii_fold(text):
    text = "".join(FOLD.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ord(ch) < 128)


def email_part(name):
    name = name.split(",")[0]          # "King, Jr." -> "King"
    folded = ascii_fold(name).lower().replace(" ", "")
    return "".join(ch for ch in folded if ch.isalnum() or ch == "-")


def weighted_choice(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for value, weight in pairs:
        x -= weight
        if x < 0:
            return value
    return pairs[-1][0]


def split_counts(total, weights):
    """Largest-remainder split of `total` by `weights` (deterministic)."""
    wsum = sum(weights)
    exact = [total * w / wsum for w in weights]
    counts = [int(e) for e in exact]
    order = sorted(range(len(weights)),
                   key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


class Person:
    __slots__ = ("key", "first", "last", "dept", "title", "location",
                 "manager", "status", "cost_center", "level", "id", "email")

    def __init__(self, key, dept, title, cost_center, level, manager):
        self.key = key
        self.dept = dept
        self.title = title
        self.cost_center = cost_center
        self.level = level            # "ceo" | "vp" | "manager" | "ic"
        self.manager = manager        # Person or None
        self.status = "Active"
        self.first = self.last = self.location = self.id = self.email = ""


def build(rows, seed):
    rng = Random(seed)
    people = []

    ceo = Person(0, "Operations", "Chief Executive Officer", "CC-0100",
                 "ceo", None)
    people.append(ceo)

    dept_sizes = split_counts(rows - 1, [d[1] for d in DEPARTMENTS])
    for (dept, _w, cc, mgr_title, ic_titles), size in zip(DEPARTMENTS,
                                                          dept_sizes):
        if size == 0:
            continue
        vp = Person(len(people), dept, "VP, " + dept, cc, "vp", ceo)
        people.append(vp)
        rest = size - 1
        # roughly one people manager per 8 people, each with >= 2 ICs
        n_mgr = min(round(rest / 8), rest // 3)
        managers = []
        for _ in range(n_mgr):
            m = Person(len(people), dept, mgr_title, cc, "manager", vp)
            people.append(m)
            managers.append(m)
        n_ic = rest - n_mgr
        for i in range(n_ic):
            if not managers:
                boss = vp
            elif i < 2 * len(managers):
                boss = managers[i % len(managers)]
            else:
                boss = rng.choice(managers)
            title = rng.choice(ic_titles)
            people.append(Person(len(people), dept, title, cc, "ic", boss))

    # Names and locations. A report usually sits where their manager sits.
    for p in people:
        p.first = rng.choice(FIRST_NAMES)
        p.last = rng.choice(LAST_NAMES)
        if p.manager is not None and p.level == "ic" and rng.random() < 0.6:
            p.location = p.manager.location
        else:
            p.location = weighted_choice(rng, LOCATIONS)
    ceo.location = "New York"

    # Employee IDs: CEO is E00001, everybody else in shuffled hiring order.
    width = max(5, len(str(rows)))
    others = people[1:]
    order = list(range(len(others)))
    rng.shuffle(order)
    ceo.id = "E" + "1".zfill(width)
    for n, idx in enumerate(order, start=2):
        others[idx].id = "E" + str(n).zfill(width)

    ics = [p for p in people if p.level == "ic"]

    # Special cells (deterministic picks among ICs, distinct people).
    specials = sorted(ics, key=lambda p: p.id)
    rng.shuffle(specials)
    picks = iter(specials)

    def pick(pred):
        for p in picks:
            if pred(p):
                return p
        return None

    p = pick(lambda p: p.dept == "Marketing")
    if p:
        p.title = '=HYPERLINK("http://x")'
    p = pick(lambda p: p.dept in ("Operations", "Finance"))
    if p:
        p.title = 'Analyst, "Special Projects"'
    p = pick(lambda p: True)
    if p:
        p.last = "King, Jr."
    reserved = {id(x) for x in people
                if x.title.startswith("=") or x.title.startswith("Analyst,")
                or x.last == "King, Jr."}

    # ~3% terminated, ICs only (never the special rows).
    n_term = round(rows * 0.03)
    candidates = [p for p in sorted(ics, key=lambda p: p.id)
                  if id(p) not in reserved]
    terminated = rng.sample(candidates, min(n_term, len(candidates)))
    terminated.sort(key=lambda p: p.id)
    for p in terminated:
        p.status = "Terminated"

    # E-mails, unique, assigned in ID order.
    used = {}
    for p in sorted(people, key=lambda p: p.id):
        base = email_part(p.first) + "." + email_part(p.last)
        n = used.get(base, 0) + 1
        used[base] = n
        local = base if n == 1 else base + str(n)
        p.email = local + "@" + DOMAIN
    # About half of the terminated rows lost their e-mail (mailbox deleted).
    for i, p in enumerate(terminated):
        if i % 2 == 0:
            p.email = ""

    return sorted(people, key=lambda p: p.id)


def write(people, out, delimiter):
    writer_args = dict(delimiter=delimiter, quotechar='"',
                       quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    if out == "-":
        fh = sys.stdout
        close = False
    else:
        fh = open(out, "w", encoding="utf-8", newline="")
        close = True
    try:
        w = csv.writer(fh, **writer_args)
        w.writerow(HEADER)
        for p in people:
            w.writerow([
                p.id, p.first, p.last, p.email, p.dept, p.title, p.location,
                p.manager.id if p.manager else "", p.status, p.cost_center,
            ])
    finally:
        if close:
            fh.close()


def parse_delimiter(value):
    aliases = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";",
               "pipe": "|"}
    value = aliases.get(value.lower(), value)
    if value not in (",", ";", "\t", "|"):
        raise argparse.ArgumentTypeError(
            "delimiter must be one of , ; | tab")
    return value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True,
                    help="number of data rows (>= 1)")
    ap.add_argument("--seed", type=int, required=True, help="random seed")
    ap.add_argument("--out", required=True, help="output path, '-' = stdout")
    ap.add_argument("--delimiter", type=parse_delimiter, default=",",
                    help="one of , ; | tab (default ,)")
    args = ap.parse_args(argv)
    if args.rows < 1:
        ap.error("--rows must be >= 1")
    write(build(args.rows, args.seed), args.out, args.delimiter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
