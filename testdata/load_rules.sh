#!/usr/bin/env bash
# Load the sample rules into autoprov, one `rules add` per line of rules.txt.
#
# Usage: load_rules.sh [CONFIG]
#   CONFIG    autoprov config file; default $CONFIG (one of the two is required)
# Environment:
#   AUTOPROV  autoprov binary (default: autoprov, looked up in PATH)
#   CONFIG    config path, used when no argument is given
#   RULES     rules file (default: rules.txt next to this script)
#   DRY_RUN=1 print the commands instead of running them
#
# rules.txt format, one rule per line:
#   NAME | ROLE | COND ; COND ; ...
# e.g.
#   Finance managers | Billing Admin | department = Finance ; is_manager = true
# Each COND is passed verbatim as one `--when` argument (syntax of SPEC §2).
# `|` and `;` inside double quotes do not split. Blank lines and lines whose
# first non-blank character is `#` are skipped.
#
# Rules are added in file order, so rule ids (and therefore precedence) follow
# the line order. Conflict warnings printed by autoprov do not stop the script;
# any non-zero exit of autoprov does (e.g. 3 = unknown role / duplicate name).

set -euo pipefail

AUTOPROV="${AUTOPROV:-autoprov}"
CONFIG="${1:-${CONFIG:-}}"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RULES="${RULES:-$script_dir/rules.txt}"

if [[ -z "$CONFIG" ]]; then
    echo "usage: $0 CONFIG   (or set CONFIG=path)" >&2
    exit 2
fi
if [[ ! -r "$RULES" ]]; then
    echo "$0: cannot read rules file: $RULES" >&2
    exit 2
fi

trim() {
    local s="$1"
    s="${s#"${s%%[![:space:]]*}"}"
    s="${s%"${s##*[![:space:]]}"}"
    printf '%s' "$s"
}

# split_quoted SEP STRING -> fills global array PARTS, splitting on SEP
# outside double quotes; each part is trimmed.
split_quoted() {
    local sep="$1" s="$2" cur="" ch inq=0 i
    PARTS=()
    for ((i = 0; i < ${#s}; i++)); do
        ch="${s:i:1}"
        if [[ "$ch" == '"' ]]; then
            inq=$((1 - inq))
            cur+="$ch"
        elif [[ "$ch" == "$sep" && $inq -eq 0 ]]; then
            PARTS+=("$(trim "$cur")")
            cur=""
        else
            cur+="$ch"
        fi
    done
    PARTS+=("$(trim "$cur")")
}

lineno=0
added=0
while IFS= read -r line || [[ -n "$line" ]]; do
    lineno=$((lineno + 1))
    line="${line%$'\r'}"
    # A UTF-8 byte order mark (Notepad's "UTF-8 with BOM") is no part of the first line.
    [[ $lineno -eq 1 ]] && line="${line#$'\xef\xbb\xbf'}"
    stripped="$(trim "$line")"
    [[ -z "$stripped" || "${stripped:0:1}" == "#" ]] && continue

    split_quoted '|' "$stripped"
    if [[ ${#PARTS[@]} -ne 3 || -z "${PARTS[0]}" || -z "${PARTS[1]}" || -z "${PARTS[2]}" ]]; then
        echo "$RULES:$lineno: expected 'NAME | ROLE | COND ; COND ...'" >&2
        exit 2
    fi
    name="${PARTS[0]}"
    role="${PARTS[1]}"
    conds="${PARTS[2]}"

    args=(--config "$CONFIG" rules add --name "$name" --role "$role")
    split_quoted ';' "$conds"
    for cond in "${PARTS[@]}"; do
        if [[ -z "$cond" ]]; then
            echo "$RULES:$lineno: empty condition" >&2
            exit 2
        fi
        args+=(--when "$cond")
    done

    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        printf '%q' "$AUTOPROV"
        printf ' %q' "${args[@]}"
        printf '\n'
    else
        echo "==> rule '$name' ($role)" >&2
        "$AUTOPROV" "${args[@]}" || {
            rc=$?
            echo "$RULES:$lineno: autoprov rules add failed (exit $rc)" >&2
            exit "$rc"
        }
    fi
    added=$((added + 1))
done < "$RULES"

echo "load_rules.sh: $added rule(s) from $RULES" >&2
