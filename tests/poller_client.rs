//! SFTP poll client against a real OpenSSH sshd (Debian's /usr/sbin/sshd, internal-sftp).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use autoprov::ingest::poll::client::*;
use autoprov::ingest::poll::stability::Stability;
use common::sha256_hex;
use common::sshd::{Sshd, UserKey};

/// The sshd's folders: `data/inbox` is the remote inbox.
const SSHD_FOLDERS: &[&str] = &["data/inbox", "data/inbox/processed", "data/inbox/rejected"];

impl Sshd {
    /// Prepares everything (a temp dir with tempfile's default prefix); `user_pub` lines go
    /// into authorized_keys.
    fn prepare(user_pubs: &[&Path]) -> Sshd {
        Sshd::prepare_with(user_pubs, ".tmp", SSHD_FOLDERS)
    }

    fn started(user_pubs: &[&Path]) -> Sshd {
        Sshd::started_with(user_pubs, ".tmp", SSHD_FOLDERS)
    }

    /// Absolute path of the remote data folder on the server's disk.
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn inbox(&self) -> String {
        self.data().join("inbox").display().to_string()
    }

    fn settings(&self, key: &Path) -> RemoteSettings {
        let inbox = self.inbox();
        RemoteSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            private_key: key.to_path_buf(),
            known_host_key: self.host_pub(),
            processed: format!("{inbox}/processed"),
            rejected: format!("{inbox}/rejected"),
            inbox,
            poll_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_bytes: 1 << 20,
        }
    }
}

fn fingerprint_of(pub_line: &str) -> String {
    russh::keys::PublicKey::from_openssh(pub_line)
        .unwrap()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string()
}

fn names(files: &[RemoteFile]) -> Vec<&str> {
    files.iter().map(|f| f.name.as_str()).collect()
}

fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn happy_path_list_download_move_upload() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let s = sshd.settings(&key.private());
    let content = b"employee_id,name\n1,Ann\n2,Bob\n".repeat(5000); // ~150 KB, several chunks
    let remote_file = sshd.data().join("inbox/roster.csv");
    fs::write(&remote_file, &content).unwrap();
    set_mtime(&remote_file, 1_700_000_000);
    fs::write(sshd.data().join("inbox/older.csv"), b"x\n").unwrap();
    set_mtime(&sshd.data().join("inbox/older.csv"), 1_600_000_000);

    let c = RemoteClient::connect(&s).await.expect("connect");
    let listing = c.list(&s.inbox).await.unwrap();
    assert_eq!(
        names(&listing),
        ["older.csv", "roster.csv"],
        "sorted by mtime"
    );
    let file = listing[1].clone();
    assert_eq!(file.size, content.len() as u64);
    assert_eq!(file.mtime, 1_700_000_000);

    let mut stab = Stability::new(Duration::ZERO);
    assert!(
        stab.stable(&listing).is_empty(),
        "nothing is stable on first sight"
    );
    let again = c.list(&s.inbox).await.unwrap();
    assert_eq!(names(&stab.stable(&again)), ["older.csv", "roster.csv"]);

    let local = tempfile::tempdir().unwrap();
    let tmp = local.path().join(".roster.csv.part");
    fs::write(&tmp, b"stale junk from a crash, longer than nothing").unwrap();
    let hash = c
        .download(&s.inbox, &file, &tmp, s.max_bytes)
        .await
        .unwrap();
    let got = fs::read(&tmp).unwrap();
    assert_eq!(got, content, "byte-exact");
    assert_eq!(hash, sha256_hex(&content));
    // the remote file is untouched until the local commit
    assert!(remote_file.exists());

    // after the local commit: move, then upload reports beside it
    let local_name = "20261103T101500Z-roster.csv";
    let target = remote_path(&s.processed, local_name).unwrap();
    c.rename(&remote_path(&s.inbox, &file.name).unwrap(), &target)
        .await
        .unwrap();
    assert!(!remote_file.exists());
    assert_eq!(
        fs::read(sshd.data().join("inbox/processed").join(local_name)).unwrap(),
        content
    );
    assert!(c.exists(&target).await.unwrap());
    assert!(
        !c.exists(&remote_path(&s.inbox, "roster.csv").unwrap())
            .await
            .unwrap()
    );

    let report = local.path().join("report.json");
    let report_body = b"{\"outcome\":\"applied\"}\n".repeat(30000); // ~700 KB
    fs::write(&report, &report_body).unwrap();
    let report_remote = remote_path(&s.processed, &format!("{local_name}.report.json")).unwrap();
    c.upload(&report, &report_remote).await.unwrap();
    let small = local.path().join("report.txt");
    fs::write(&small, "applied: 2 rows\n").unwrap();
    let small_remote = remote_path(&s.processed, &format!("{local_name}.report.txt")).unwrap();
    c.upload(&small, &small_remote).await.unwrap();
    let processed = sshd.data().join("inbox/processed");
    assert_eq!(
        fs::read(processed.join(format!("{local_name}.report.json"))).unwrap(),
        report_body
    );
    assert_eq!(
        fs::read_to_string(processed.join(format!("{local_name}.report.txt"))).unwrap(),
        "applied: 2 rows\n"
    );
    let mut on_disk: Vec<String> = fs::read_dir(&processed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        [
            local_name.to_string(),
            format!("{local_name}.report.json"),
            format!("{local_name}.report.txt")
        ],
        "no temporary upload left behind"
    );

    // never overwrite: rename onto an existing name and upload onto an existing name fail
    let older = remote_path(&s.inbox, "older.csv").unwrap();
    let err = c.rename(&older, &target).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(sshd.data().join("inbox/older.csv").exists());
    assert_eq!(fs::read(processed.join(local_name)).unwrap(), content);
    let err = c.upload(&small, &report_remote).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        fs::read(processed.join(format!("{local_name}.report.json"))).unwrap(),
        report_body
    );
    assert_eq!(fs::read_dir(&processed).unwrap().count(), 3);
    c.close().await;
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn wrong_pinned_host_key_is_a_mismatch_and_nothing_is_fetched() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    fs::write(sshd.data().join("inbox/roster.csv"), b"a\n").unwrap();
    let other = UserKey::new("ed25519", None);
    let other_pub = fs::read_to_string(other.public()).unwrap();
    let mut s = sshd.settings(&key.private());
    s.known_host_key = other_pub.clone();
    let err = match RemoteClient::connect(&s).await {
        Err(e) => e,
        Ok(_) => panic!("connected despite a wrong host key"),
    };
    match &err {
        PollError::HostKeyMismatch { expected, got } => {
            assert_eq!(expected, &fingerprint_of(&other_pub));
            assert_eq!(got, &fingerprint_of(&sshd.host_pub()));
            assert!(expected.starts_with("SHA256:"));
        }
        e => panic!("expected HostKeyMismatch, got {e:?}"),
    }
    assert!(err.is_fatal());
    assert!(err.to_string().contains("does not match"));
    // the user never authenticated: sshd saw no accepted key
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());

    // A pinned RSA key against an ed25519-only server is a mismatch too (not a vague
    // negotiation error).
    let rsa = UserKey::new("rsa", Some(3072));
    s.known_host_key = fs::read_to_string(rsa.public()).unwrap();
    assert!(matches!(
        RemoteClient::connect(&s).await,
        Err(PollError::HostKeyMismatch { .. })
    ));
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn wrong_user_key_is_auth_failed() {
    let key = UserKey::new("ed25519", None);
    let stranger = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let s = sshd.settings(&stranger.private());
    match RemoteClient::connect(&s).await {
        Err(PollError::AuthFailed) => {}
        Err(e) => panic!("expected AuthFailed, got {e:?}"),
        Ok(_) => panic!("logged in with a key that is not authorized"),
    }
    // a missing key file is a clear config error, not a panic
    let mut s2 = s.clone();
    s2.private_key = "/nonexistent/id_ed25519".into();
    let err = RemoteClient::connect(&s2).await.err().unwrap();
    assert!(err.to_string().contains("private_key"), "{err}");
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn rsa_3072_user_key_works_with_rsa_sha2() {
    let key = UserKey::new("rsa", Some(3072));
    let sshd = Sshd::started(&[&key.public()]);
    fs::write(sshd.data().join("inbox/r.csv"), b"1\n").unwrap();
    let s = sshd.settings(&key.private());
    let c = RemoteClient::connect(&s)
        .await
        .expect("connect with RSA key");
    assert_eq!(names(&c.list(&s.inbox).await.unwrap()), ["r.csv"]);
    c.close().await;
    let log = sshd.log();
    assert!(
        log.contains("Accepted publickey for root") && log.contains("RSA SHA256:"),
        "{log}"
    );
    // the signature algorithm sshd verified (OpenSSH 9.2 also refuses SHA-1 ssh-rsa by default)
    assert!(
        log.contains("pkalg rsa-sha2-512") || log.contains("pkalg rsa-sha2-256"),
        "{log}"
    );
    assert!(!log.contains("pkalg ssh-rsa "), "{log}");
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn too_large_is_refused_without_downloading() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let s = sshd.settings(&key.private());
    fs::write(sshd.data().join("inbox/big.csv"), vec![b'x'; 2000]).unwrap();
    let c = RemoteClient::connect(&s).await.unwrap();
    let listing = c.list(&s.inbox).await.unwrap();
    assert_eq!(listing[0].size, 2000);
    let local = tempfile::tempdir().unwrap();
    let tmp = local.path().join(".big.part");

    match c.download(&s.inbox, &listing[0], &tmp, 1000).await {
        Err(PollError::TooLarge { name, size, max }) => {
            assert_eq!((name.as_str(), size, max), ("big.csv", 2000, 1000));
        }
        r => panic!("expected TooLarge, got {r:?}"),
    }
    assert!(!tmp.exists(), "nothing written locally");

    // The listing lied (file grew past max_bytes after listing): caught at open, before reading.
    let stale = RemoteFile {
        name: "big.csv".into(),
        size: 500,
        mtime: listing[0].mtime,
    };
    assert!(matches!(
        c.download(&s.inbox, &stale, &tmp, 1000).await,
        Err(PollError::TooLarge { size: 2000, .. })
    ));
    assert!(!tmp.exists());
    // Grew but still under max: "changed", not fetched, no local file left.
    let err = c
        .download(&s.inbox, &stale, &tmp, 10_000)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("changed"), "{err}");
    assert!(!tmp.exists());
    // remote untouched
    assert_eq!(
        fs::metadata(sshd.data().join("inbox/big.csv"))
            .unwrap()
            .len(),
        2000
    );
    c.close().await;
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn stability_needs_two_identical_listings() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let s = sshd.settings(&key.private());
    let path = sshd.data().join("inbox/growing.csv");
    fs::write(&path, b"id\n1\n").unwrap();
    fs::write(sshd.data().join("inbox/done.csv"), b"id\n").unwrap();
    let c = RemoteClient::connect(&s).await.unwrap();
    let mut stab = Stability::new(Duration::ZERO);

    assert!(stab.stable(&c.list(&s.inbox).await.unwrap()).is_empty());
    // appended between listings (same second possibly; the size changes)
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"2\n")
        .unwrap();
    let second = stab.stable(&c.list(&s.inbox).await.unwrap());
    assert_eq!(
        names(&second),
        ["done.csv"],
        "the growing file is not returned"
    );
    let third = stab.stable(&c.list(&s.inbox).await.unwrap());
    assert!(names(&third).contains(&"growing.csv"));
    let g = third.iter().find(|f| f.name == "growing.csv").unwrap();
    assert_eq!(g.size, 7);
    // a file that disappears is forgotten; when it comes back it needs two sightings again
    fs::rename(&path, sshd.data().join("growing.csv")).unwrap();
    assert_eq!(
        names(&stab.stable(&c.list(&s.inbox).await.unwrap())),
        ["done.csv"]
    );
    fs::rename(sshd.data().join("growing.csv"), &path).unwrap();
    assert_eq!(
        names(&stab.stable(&c.list(&s.inbox).await.unwrap())),
        ["done.csv"]
    );
    assert_eq!(stab.stable(&c.list(&s.inbox).await.unwrap()).len(), 2);
    c.close().await;
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn hidden_partial_and_odd_entries_are_skipped() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let s = sshd.settings(&key.private());
    let inbox = sshd.data().join("inbox");
    for n in [
        "ok.csv",
        ".hidden.csv",
        "a.csv.part",
        "b.FILEPART",
        "c.tmp",
        "d.partial",
        "line\nbreak.csv",
        "x.partial.csv",
    ] {
        fs::write(inbox.join(n), b"1\n").unwrap();
    }
    fs::write(
        inbox.join(std::ffi::OsStr::from_bytes(b"latin1-\xe4.csv")),
        b"1\n",
    )
    .unwrap();
    fs::create_dir(inbox.join("subdir.csv")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", inbox.join("link.csv")).unwrap();
    let c = RemoteClient::connect(&s).await.unwrap();
    let mut got = names(&c.list(&s.inbox).await.unwrap())
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["ok.csv", "x.partial.csv"]);
    // Named for `status`: the names never fetched while they stay so, and the link (a
    // vendor delivering by link had its roster never applied, the poll healthy); not the
    // hidden and partial names, nor the folder.
    let (_, mut odd) = c.list_all(&s.inbox).await.unwrap();
    odd.sort();
    assert_eq!(odd.len(), 3, "{odd:?}");
    assert!(
        odd[2].starts_with("\"link.csv\": a symlink, never followed"),
        "{odd:?}"
    );
    // A folder that is not there is named in the error.
    let err = c.list("nothere").await.unwrap_err().to_string();
    assert!(err.contains("the folder \"nothere\""), "{err}");
    c.close().await;
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn names_with_spaces_and_unicode_round_trip() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let s = sshd.settings(&key.private());
    let odd = [
        "Roster März 2026.csv",
        "two  spaces .csv",
        "社員名簿.csv",
        "'quote\" & $x.csv",
    ];
    for (i, n) in odd.iter().enumerate() {
        fs::write(sshd.data().join("inbox").join(n), format!("row {i}\n")).unwrap();
    }
    let c = RemoteClient::connect(&s).await.unwrap();
    let listing = c.list(&s.inbox).await.unwrap();
    assert_eq!(listing.len(), odd.len());
    let local = tempfile::tempdir().unwrap();
    for f in &listing {
        let i = odd
            .iter()
            .position(|n| *n == f.name)
            .expect("name kept exactly");
        let tmp = local.path().join(format!(".dl-{i}"));
        let hash = c.download(&s.inbox, f, &tmp, s.max_bytes).await.unwrap();
        let want = format!("row {i}\n");
        assert_eq!(fs::read_to_string(&tmp).unwrap(), want);
        assert_eq!(hash, sha256_hex(want.as_bytes()));
        let to = remote_path(&s.rejected, &format!("20261103T101500Z-{}", f.name)).unwrap();
        c.rename(&remote_path(&s.inbox, &f.name).unwrap(), &to)
            .await
            .unwrap();
        let report = local.path().join("r");
        fs::write(&report, "rejected\n").unwrap();
        c.upload(&report, &format!("{to}.report.txt"))
            .await
            .unwrap();
        let on_disk = sshd
            .data()
            .join("inbox/rejected")
            .join(format!("20261103T101500Z-{}", f.name));
        assert_eq!(fs::read_to_string(&on_disk).unwrap(), want);
        assert_eq!(
            fs::read_to_string(
                on_disk.with_file_name(format!("20261103T101500Z-{}.report.txt", f.name))
            )
            .unwrap(),
            "rejected\n"
        );
    }
    assert!(c.list(&s.inbox).await.unwrap().is_empty());
    c.close().await;
}

#[test]
fn remote_path_rejects_traversal() {
    assert_eq!(remote_path("out/in", "a b.csv").unwrap(), "out/in/a b.csv");
    assert_eq!(
        remote_path("out/in/", "März.csv").unwrap(),
        "out/in/März.csv"
    );
    assert_eq!(remote_path("/", "x").unwrap(), "/x");
    for bad in ["..", ".", "", "../etc/passwd", "a/b", "/abs", "nul\0.csv"] {
        let e = remote_path("out", bad).unwrap_err();
        assert!(matches!(e, PollError::Other(_)), "{bad:?}");
    }
}

#[tokio::test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
async fn server_down_then_up() {
    let key = UserKey::new("ed25519", None);
    let mut sshd = Sshd::prepare(&[&key.public()]);
    let s = sshd.settings(&key.private());
    let t = Instant::now();
    let err = RemoteClient::connect(&s)
        .await
        .err()
        .expect("nobody listens");
    assert!(matches!(err, PollError::Other(_)), "{err:?}");
    assert!(!err.is_fatal());
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // reconnect loop with back-off, as the daemon would run it
    let mut backoff = Backoff::new(Duration::from_secs(300));
    assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    sshd.start();
    let c = RemoteClient::connect(&s).await.expect("server is up now");
    backoff.reset();
    assert!(c.list(&s.inbox).await.unwrap().is_empty());
    c.close().await;
    assert_eq!(backoff.next_delay(), Duration::from_secs(1));
}

#[tokio::test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH ssh-keygen (.ci/run installs it)"
)]
async fn silent_server_times_out() {
    let key = UserKey::new("ed25519", None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(sock);
    });
    let other = UserKey::new("ed25519", None);
    let s = RemoteSettings {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        private_key: key.private(),
        known_host_key: fs::read_to_string(other.public()).unwrap(),
        inbox: "in".into(),
        processed: "in/processed".into(),
        rejected: "in/rejected".into(),
        poll_interval: Duration::from_secs(60),
        timeout: Duration::from_millis(500),
        max_bytes: 100,
    };
    let t = Instant::now();
    let err = RemoteClient::connect(&s).await.err().unwrap();
    assert!(matches!(err, PollError::Timeout("connect")), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    hold.abort();
}

#[test]
fn backoff_sequence() {
    let mut b = Backoff::new(Duration::from_secs(60));
    let seq: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(seq, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_secs(1));
    assert_eq!(b.next_delay(), Duration::from_secs(2));
    let mut tiny = Backoff::new(Duration::from_millis(300));
    assert_eq!(tiny.next_delay(), Duration::from_millis(300));
    assert_eq!(tiny.next_delay(), Duration::from_millis(300));
}

#[test]
fn stability_unit() {
    let f = |n: &str, size, mtime| RemoteFile {
        name: n.into(),
        size,
        mtime,
    };
    let mut st = Stability::new(Duration::ZERO);
    assert!(st.stable(&[f("a", 1, 1), f("b", 2, 2)]).is_empty());
    assert_eq!(st.stable(&[f("a", 1, 1), f("b", 3, 2)]), vec![f("a", 1, 1)]);
    assert_eq!(st.stable(&[f("b", 3, 2)]), vec![f("b", 3, 2)]);
    assert!(
        st.stable(&[f("a", 1, 1)]).is_empty(),
        "a was forgotten when it disappeared"
    );
    assert_eq!(st.stable(&[f("a", 1, 5)]), vec![], "mtime change");
}

#[test]
fn a_file_is_stable_only_once_unchanged_for_the_quiet_period() {
    let f = |size| RemoteFile {
        name: "roster.csv".into(),
        size,
        mtime: 1_700_000_000,
    };
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    let mut st = Stability::new(Duration::from_secs(60));
    let first = st.settled_at(&[f(10)], at(0));
    assert!(first.stable.is_empty());
    assert_eq!(first.next, Some(Duration::from_secs(60)));
    // A listing a second later (the retry after a failed poll) sees it unchanged: too soon.
    let retry = st.settled_at(&[f(10)], at(1));
    assert!(retry.stable.is_empty(), "two listings a second apart");
    assert_eq!(retry.next, Some(Duration::from_secs(59)));
    // It grows after a pause: the quiet period starts again.
    assert!(st.settled_at(&[f(20)], at(30)).stable.is_empty());
    assert!(st.settled_at(&[f(20)], at(89)).stable.is_empty());
    assert_eq!(st.settled_at(&[f(20)], at(90)).stable, vec![f(20)]);
}
