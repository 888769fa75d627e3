//! Every command's success and error replies, framing and session rules.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn greeting_is_220_ferry_version_ready_and_points_at_help() {
    let server = TestServer::start();
    let mut c = Client::connect_raw(server.addr()).unwrap();
    let (code, text) = c.read_reply();
    assert_eq!(code, 220);
    assert!(
        text.starts_with("ferry ") && text.ends_with(" ready; HELP lists the commands"),
        "{text:?}"
    );
}

/// Issue 18: `HELP` lists every command with its syntax, before login
/// too, as a data block like any other.
#[test]
fn help_lists_every_command_with_its_syntax() {
    let server = TestServer::start();
    let mut c = server.connect();
    let text = c
        .data_cmd(b"HELP")
        .unwrap_or_else(|(c, t)| panic!("HELP answered {c} {t}"));
    let text = String::from_utf8(text).unwrap();
    for syntax in [
        "AUTH <user> <password>",
        "LIST [<path>]",
        "TREE [<path>]",
        "VIEW <path>",
        "GET <path>",
        "PUT <size> <path>",
        "DEL <path>",
        "HASH <path>",
        "STAT <path>",
        "PARTIAL <path>",
        "MKDIR <path>",
        "RMDIR <path>",
        "RMTREE <path>",
        "FROM <path>",
        "REPLACE",
        "MOVE <path>",
        "COPY <path>",
        "REST <offset>",
        "EXPECT sha256=<hex>",
        "NOOP",
        "HELP",
        "QUIT",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(syntax)),
            "HELP lacks {syntax:?}:\n{text}"
        );
    }
    c.expect("HELP me", 501);
    c.login(ALICE, ALICE_PW);
    assert_eq!(c.data_cmd(b"help").unwrap(), text.as_bytes());
}

#[test]
fn auth_with_correct_password_logs_in() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 230);
    // A file command now works.
    assert!(c.list().is_empty());
}

#[test]
fn auth_password_is_rest_of_line_with_spaces() {
    let server = TestServer::start();
    let mut c = server.connect();
    // Only a prefix of the password: wrong.
    c.expect(&format!("AUTH {BOB} correct horse"), 530);
    c.expect(&format!("AUTH {BOB} {BOB_PW}"), 230);
}

#[test]
fn auth_password_is_not_trimmed() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect(&format!("AUTH {ALICE} {ALICE_PW} "), 530);
    c.expect(&format!("AUTH {ALICE}  {ALICE_PW}"), 530);
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 230);
}

#[test]
fn auth_wrong_password_and_unknown_user_get_530() {
    let server = TestServer::start();
    let mut c = server.connect();
    let wrong_pw = c.expect(&format!("AUTH {ALICE} wrong-password"), 530);
    let unknown = c.expect("AUTH nosuchuser whatever", 530);
    // The reply must not tell an unknown user from a wrong password.
    assert_eq!(wrong_pw, unknown);
    // Still not logged in.
    c.expect("LIST", 530);
    // Two failures so far: the connection is still usable and the right
    // password still works.
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 230);
    c.list();
}

#[test]
fn auth_other_users_password_is_rejected() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect(&format!("AUTH {ALICE} {BOB_PW}"), 530);
    // Case matters for the password.
    c.expect(&format!("AUTH {ALICE} {}", ALICE_PW.to_uppercase()), 530);
}

#[test]
fn auth_username_must_match_exactly() {
    let server = TestServer::start();
    for user in [
        "ALICE", "Alice", "alice ", "../alice", "./alice", "alice/", ".ferry",
    ] {
        let mut c = server.connect();
        c.expect(&format!("AUTH {user} {ALICE_PW}"), 530);
    }
    // Nothing was created for the bogus names.
    for name in dir_entries(&server.storage()) {
        let name = name.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name == ".ferry", "unexpected {name:?} in storage root");
    }
}

#[test]
fn third_failed_auth_closes_connection() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect(&format!("AUTH {ALICE} bad1"), 530);
    c.expect(&format!("AUTH {ALICE} bad2"), 530);
    c.expect("AUTH nobody bad3", 530);
    c.expect_eof();
    // Other connections are unaffected.
    let mut d = server.alice();
    d.noop();
}

#[test]
fn auth_missing_arguments_is_501_and_not_counted_as_failure() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect("AUTH", 501);
    c.expect(&format!("AUTH {ALICE}"), 501);
    c.expect("AUTH", 501);
    // If the 501s counted as failures, the next one would close the connection.
    c.expect(&format!("AUTH {ALICE} bad1"), 530);
    c.expect(&format!("AUTH {ALICE} bad2"), 530);
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 230);
    c.noop();
}

#[test]
fn auth_while_logged_in_is_503() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 503);
    c.expect(&format!("AUTH {BOB} {BOB_PW}"), 503);
    // Still alice.
    c.put("who", b"alice");
    assert!(server.user_dir(ALICE).join("who").is_file());
    assert!(!server.user_dir(BOB).join("who").exists());
}

#[test]
fn file_commands_before_auth_get_530_whatever_their_arguments() {
    let server = TestServer::start();
    let mut c = server.connect();
    for line in [
        "LIST",
        "LIST extra",
        "list",
        "VIEW x",
        "VIEW",
        "GET x",
        "GET",
        "GET ../etc/passwd",
        "PUT 5 x",
        "PUT abc x",
        "PUT -1 ../x",
        "PUT",
        "DEL x",
        "DEL",
        "del ..",
    ] {
        c.expect(line, 530);
    }
    // The refused PUT expects no payload: the session still answers commands.
    c.noop();
    assert!(dir_entries(&server.storage().join(ALICE)).is_empty());
}

#[test]
fn noop_and_quit_work_before_auth() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
    c.expect_eof();
}

#[test]
fn quit_after_login_says_bye_and_closes() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("f", b"data");
    c.expect("QUIT", 221);
    c.expect_eof();
}

#[test]
fn unknown_verb_and_empty_line_get_500_before_and_after_auth() {
    let server = TestServer::start();
    let mut c = server.connect();
    // The verb is checked before being logged in.
    c.expect("FOO", 500);
    c.expect("FOO ../x", 500);
    c.expect("", 500);
    c.expect("\r", 500);
    c.expect("GETX a", 500);
    c.expect(" GET a", 500);
    // A CR that is not directly before the LF is part of the line.
    c.expect("NO\rOP", 500);
    c.send_raw(b"NOOP\r\r\n");
    assert_eq!(c.read_code(), 500);
    c.send_raw(b"NOOP\0\n");
    assert_eq!(c.read_code(), 500);
    c.login(ALICE, ALICE_PW);
    c.expect("FOO", 500);
    c.expect("", 500);
    c.expect("STOR a", 500);
    c.noop();
}

#[test]
fn reply_priority_follows_documented_order() {
    let server = TestServer::builder()
        .args(["--max-file-size", "1000"])
        .start();
    let mut c = server.connect();
    c.expect("BOGUS ../x", 500); // verb first
    c.expect("PUT abc ../x", 530); // then login
    c.expect("PUT 99999 ../x", 530);
    c.login(ALICE, ALICE_PW);
    c.expect("PUT abc ../x", 501); // then arguments
    c.expect("PUT 99999 ../x", 553); // then the name
    c.expect("PUT 99999 ok", 552); // then the size limit
    c.expect("GET ../x", 553);
    c.expect("GET nosuch", 550); // then the file itself
    c.expect("VIEW ../x", 553);
    c.expect("DEL ../x", 553);
    c.expect("DEL nosuch", 550);
    c.noop();
}

#[test]
fn missing_or_extra_arguments_get_501() {
    let server = TestServer::start();
    let mut c = server.alice();
    // LIST takes a folder's path; a space and nothing is malformed.
    c.expect("LIST ", 501);
    c.expect("GET", 501);
    c.expect("VIEW", 501);
    c.expect("DEL", 501);
    c.expect("PUT", 501);
    c.expect("PUT 5", 501);
    c.noop();
}

#[test]
fn put_get_roundtrip_binary_content() {
    let server = TestServer::start();
    let mut c = server.alice();
    // All byte values, including LF, CR and command-looking text.
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"\nQUIT\r\nDEL data.bin\n");
    data.extend(pseudo_random_bytes(1, 100_000));
    c.put("data.bin", &data);
    // Stored under <storage>/<user>/<name>.
    let on_disk = fs::read(server.user_dir(ALICE).join("data.bin")).unwrap();
    assert_eq!(sha256_hex(&on_disk), sha256_hex(&data));
    let got = c.get("data.bin");
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    // No reply line follows the data: the next line answers the next command.
    c.noop();
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn put_overwrites_existing_file() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("f.txt", b"first version, rather long");
    c.put("f.txt", b"second");
    assert_eq!(c.get("f.txt"), b"second");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("f.txt")).unwrap(),
        b"second"
    );
    let list = c.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].size, 6);
}

#[test]
fn put_of_size_zero_answers_150_0_then_226_at_once() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.send_line("PUT 0 empty");
    assert_eq!(c.read_reply(), (150, "0".to_string()));
    // No payload is sent.
    assert_eq!(c.read_reply(), (226, stored(b"")));
    let meta = fs::metadata(server.user_dir(ALICE).join("empty")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 0);
    assert_eq!(c.get("empty"), b"");
    assert_eq!(c.view("empty"), b"");
    c.noop();
}

#[test]
fn put_over_max_file_size_is_552_and_expects_no_payload() {
    let server = TestServer::builder()
        .args(["--max-file-size", "1000"])
        .start();
    let mut c = server.alice();
    c.expect("PUT 1001 big", 552);
    c.expect("PUT 18446744073709551615 big", 552);
    // The refused PUT expects no payload.
    c.noop();
    assert!(!server.user_dir(ALICE).join("big").exists());
    // Exactly the maximum is fine.
    let data = pseudo_random_bytes(2, 1000);
    c.put("big", &data);
    assert_eq!(c.get("big"), data);
}

#[test]
fn put_with_bad_size_is_501() {
    let server = TestServer::start();
    let mut c = server.alice();
    for line in [
        "PUT -1 x",
        "PUT +1 x",
        "PUT abc x",
        "PUT 1.5 x",
        "PUT 0x10 x",
        "PUT 1e3 x",
        "PUT 12a x",
        "PUT x",
        "PUT  5 x", // two spaces: the size is empty
        "PUT 123456789012345678901 x",
        "PUT 18446744073709551616 x",
        "PUT 99999999999999999999 x",
    ] {
        c.expect(line, 501);
        // No payload is expected after a refused PUT.
        c.noop();
    }
    assert!(c.list().is_empty());
}

#[test]
fn get_whole_file_and_missing_file() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(3, 5000);
    c.put("g.bin", &data);
    c.send_line("GET g.bin");
    assert_eq!(c.read_reply(), (150, "5000".to_string()));
    assert_eq!(c.read_exact_bytes(5000), data);
    c.expect("GET missing.bin", 550);
    c.noop();
}

#[test]
fn view_of_small_file_sends_whole_file() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = b"hello\nworld\n";
    c.put("small.txt", data);
    c.send_line("VIEW small.txt");
    assert_eq!(c.read_reply(), (150, data.len().to_string()));
    assert_eq!(c.read_exact_bytes(data.len()), data);
    c.noop();
    let d1023 = pseudo_random_bytes(4, 1023);
    c.put("s1023", &d1023);
    assert_eq!(c.view("s1023"), d1023);
}

#[test]
fn view_of_large_file_sends_first_1024_bytes() {
    let server = TestServer::start();
    let mut c = server.alice();
    for (name, len) in [("l1024", 1024usize), ("l1025", 1025), ("l5000", 5000)] {
        let data = pseudo_random_bytes(len as u64, len);
        c.put(name, &data);
        c.send_line(&format!("VIEW {name}"));
        assert_eq!(c.read_reply(), (150, "1024".to_string()), "VIEW {name}");
        assert_eq!(c.read_exact_bytes(1024), &data[..1024]);
        // Nothing else follows the 1024 bytes.
        c.noop();
    }
    c.expect("VIEW nosuch", 550);
}

#[test]
fn del_removes_file_then_550() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("d.txt", b"x");
    c.expect("DEL d.txt", 250);
    assert!(!server.user_dir(ALICE).join("d.txt").exists());
    c.expect("DEL d.txt", 550);
    c.expect("GET d.txt", 550);
    c.expect("VIEW d.txt", 550);
    assert!(c.list().is_empty());
}

#[test]
fn list_of_empty_directory_is_150_0() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.send_line("LIST");
    assert_eq!(c.read_reply(), (150, "0".to_string()));
    // No data: the next reply answers NOOP.
    c.noop();
    // After deleting the only file the listing is empty again.
    c.put("a", b"1");
    c.expect("DEL a", 250);
    c.send_line("LIST");
    assert_eq!(c.read_reply(), (150, "0".to_string()));
    c.noop();
}

#[test]
fn list_format_every_file_once_in_blocks_of_whole_lines() {
    let server = TestServer::start();
    let mut c = server.alice();
    let before = now_secs();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("b", b"bb".to_vec()),
        ("a", b"a".to_vec()),
        ("B", b"BBBBBBBBBBBB".to_vec()),
        ("a b", vec![]),
        ("\u{e9}t\u{e9}", pseudo_random_bytes(5, 3000)),
        ("_x", b"under".to_vec()),
        ("10", b"ten".to_vec()),
        ("9", b"nine".to_vec()),
        (".hidden", b"dot".to_vec()),
    ];
    for (name, data) in &files {
        c.put(name, data);
    }
    let after = now_secs();

    // Expected listing, built from the files on disk, sorted by byte order.
    let mut names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut expected = Vec::new();
    for name in &names {
        let meta = fs::metadata(server.user_dir(ALICE).join(name)).unwrap();
        expected
            .extend_from_slice(format!("{} {} {}\n", meta.len(), meta.mtime(), name).as_bytes());
    }

    // Directory order: compared sorted.
    let data = c.list_raw();
    let mut lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    lines.sort_by_key(|line| line.splitn(3, |&b| b == b' ').nth(2));
    assert_eq!(
        String::from_utf8_lossy(&lines.concat()),
        String::from_utf8_lossy(&expected)
    );
    // Nothing follows the announced bytes.
    c.noop();

    for e in parse_listing(&data) {
        assert!(
            e.mtime + 2 >= before && e.mtime <= after + 2,
            "mtime {} outside [{before}, {after}]",
            e.mtime
        );
        let (_, content) = files
            .iter()
            .find(|(n, _)| n.as_bytes() == e.name.as_slice())
            .unwrap();
        assert_eq!(e.size, content.len() as u64);
    }
}

#[test]
fn names_with_spaces_are_kept_verbatim() {
    let server = TestServer::start();
    let mut c = server.alice();
    let names = [
        "my file.txt",
        " lead",
        "trail ",
        "  two",
        "x",
        " x",
        "a  b ",
    ];
    for (i, name) in names.iter().enumerate() {
        c.put(name, format!("content {i}").as_bytes());
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            c.get(name),
            format!("content {i}").as_bytes(),
            "GET {name:?}"
        );
        assert!(
            server.user_dir(ALICE).join(name).is_file(),
            "{name:?} not stored verbatim"
        );
    }
    // `GET  x` names " x", not "x".
    c.send_line("GET  x");
    assert_eq!(c.read_reply(), (150, "9".to_string()));
    assert_eq!(c.read_exact_bytes(9), b"content 5");
    let mut listed = c.list_names();
    listed.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(dir_entries(&server.user_dir(ALICE)).len(), names.len());
    c.expect("DEL trail ", 250);
    assert!(!server.user_dir(ALICE).join("trail ").exists());
    c.expect("DEL trail", 550);
}

#[test]
fn crlf_line_endings_are_accepted() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.send_raw(b"NOOP\r\n");
    assert_eq!(c.read_code(), 200);
    // The password must not include the CR.
    c.send_raw(format!("AUTH {ALICE} {ALICE_PW}\r\n").as_bytes());
    assert_eq!(c.read_code(), 230);
    c.send_raw(b"PUT 3 crlf.txt\r\n");
    assert_eq!(c.read_reply(), (150, "3".to_string()));
    c.send_raw(b"abc");
    assert_eq!(c.read_reply(), (226, stored(b"abc")));
    // The name must not include the CR.
    assert!(server.user_dir(ALICE).join("crlf.txt").is_file());
    assert_eq!(dir_entries(&server.user_dir(ALICE)).len(), 1);
    c.send_raw(b"GET crlf.txt\r\n");
    assert_eq!(c.read_reply(), (150, "3".to_string()));
    assert_eq!(c.read_exact_bytes(3), b"abc");
    c.send_raw(b"LIST\r\n");
    let listing = c.read_list_blocks();
    assert_eq!(parse_listing(&listing)[0].name, b"crlf.txt");
    c.send_raw(b"DEL crlf.txt\r\n");
    assert_eq!(c.read_code(), 250);
    c.send_raw(b"QUIT\r\n");
    assert_eq!(c.read_code(), 221);
    c.expect_eof();
}

#[test]
fn verbs_are_case_insensitive() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.expect("noop", 200);
    c.expect("NoOp", 200);
    c.expect(&format!("auth {ALICE} {ALICE_PW}"), 230);
    c.send_line("pUt 2 mixed");
    assert_eq!(c.read_reply(), (150, "2".to_string()));
    c.send_raw(b"hi");
    assert_eq!(c.read_reply(), (226, stored(b"hi")));
    c.send_line("get mixed");
    assert_eq!(c.read_reply(), (150, "2".to_string()));
    assert_eq!(c.read_exact_bytes(2), b"hi");
    c.send_line("View mixed");
    assert_eq!(c.read_reply(), (150, "2".to_string()));
    assert_eq!(c.read_exact_bytes(2), b"hi");
    c.send_line("list");
    let listing = parse_listing(&c.read_list_blocks());
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].name, b"mixed");
    c.expect("dEl mixed", 250);
    c.expect("quit", 221);
    c.expect_eof();
}

#[test]
fn overlong_line_is_500_and_session_continues() {
    let server = TestServer::start();
    let mut c = server.alice();
    let mut line = b"NOOP ".to_vec();
    line.resize(5000, b'x');
    line.extend_from_slice(b"\nNOOP\nNOOP\n");
    c.send_raw(&line);
    // Exactly one reply for the long line, then the two NOOPs in order.
    assert_eq!(c.read_code(), 500);
    assert_eq!(c.read_code(), 200);
    assert_eq!(c.read_code(), 200);
    // Still logged in.
    c.list();
}

#[test]
fn overlong_line_tail_is_discarded_not_executed() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("keep", b"keep me");
    // One line of 4096 + 8 bytes + LF: a server that cut it at the limit and
    // parsed the tail as a new line would delete the file.
    let mut line = vec![b'A'; 4096];
    line.extend_from_slice(b"DEL keep");
    c.send_line_bytes(&line);
    assert_eq!(c.read_code(), 500);
    c.noop();
    assert_eq!(c.get("keep"), b"keep me");
}

#[test]
fn line_of_exactly_4096_bytes_including_lf_is_accepted() {
    let server = TestServer::start();
    let mut c = server.connect();
    // AUTH with a long password: a parsed line gets 530, an overlong one 500.
    let mut line = format!("AUTH {ALICE} ").into_bytes();
    line.resize(4095, b'p');
    c.send_line_bytes(&line); // 4095 + LF = 4096
    assert_eq!(c.read_code(), 530, "a 4096-byte line must be parsed");
    line.push(b'p');
    c.send_line_bytes(&line); // 4097
    assert_eq!(c.read_code(), 500);
    c.login(ALICE, ALICE_PW);
    c.noop();
}

#[test]
fn megabyte_line_without_newline_is_500_and_session_recovers() {
    let server = TestServer::start();
    let mut c = server.alice();
    let blob = vec![b'z'; 1024 * 1024];
    // Write from a thread: the server may answer 500 before it has read all
    // of it, and the test must not depend on buffer sizes.
    let mut w = c.stream().try_clone().unwrap();
    let writer = thread::spawn(move || {
        use std::io::Write;
        w.write_all(&blob).unwrap();
        w.write_all(b"\nNOOP\n").unwrap();
    });
    assert_eq!(c.read_code(), 500);
    assert_eq!(c.read_code(), 200);
    writer.join().unwrap();
    c.noop();
    c.put("after", b"still works");
    assert_eq!(c.get("after"), b"still works");
    // Another client is served normally.
    server.bob().noop();
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = TestServer::start();
    let mut setup = server.alice();
    setup.put("p.txt", b"pipelined content");
    drop(setup);

    let mut c = server.connect();
    let script = format!(
        "NOOP\nFOO\nAUTH {ALICE} {ALICE_PW}\nLIST\nGET p.txt\nVIEW p.txt\nGET missing\nDEL p.txt\nGET p.txt\nLIST\nNOOP\n"
    );
    c.send_raw(script.as_bytes());
    assert_eq!(c.read_code(), 200);
    assert_eq!(c.read_code(), 500);
    assert_eq!(c.read_code(), 230);
    let listing = parse_listing(&c.read_list_blocks());
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].name, b"p.txt");
    assert_eq!(c.read_reply(), (150, "17".to_string()));
    assert_eq!(c.read_exact_bytes(17), b"pipelined content");
    assert_eq!(c.read_reply(), (150, "17".to_string()));
    assert_eq!(c.read_exact_bytes(17), b"pipelined content");
    assert_eq!(c.read_code(), 550);
    assert_eq!(c.read_code(), 250);
    assert_eq!(c.read_code(), 550);
    assert_eq!(c.read_reply(), (150, "0".to_string()));
    assert_eq!(c.read_code(), 200);
}

#[test]
fn command_pipelined_after_put_payload_is_answered() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.send_line("PUT 5 pp");
    assert_eq!(c.read_reply(), (150, "5".to_string()));
    // Payload and the next commands in one write.
    c.send_raw(b"12345NOOP\nGET pp\n");
    assert_eq!(c.read_reply(), (226, stored(b"12345")));
    assert_eq!(c.read_code(), 200);
    assert_eq!(c.read_reply(), (150, "5".to_string()));
    assert_eq!(c.read_exact_bytes(5), b"12345");
}

#[test]
fn half_closed_client_gets_all_replies_before_eof() {
    let server = TestServer::start();
    let mut setup = server.alice();
    setup.put("one", b"1");
    setup.put("two", b"22");
    drop(setup);

    let mut c = server.connect();
    c.send_raw(format!("AUTH {ALICE} {ALICE_PW}\nLIST\n").as_bytes());
    c.shutdown_write();
    assert_eq!(c.read_code(), 230);
    let listing = parse_listing(&c.read_list_blocks());
    let mut names: Vec<_> = listing.iter().map(|e| e.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec![b"one".to_vec(), b"two".to_vec()]);
    c.expect_eof();
}

#[test]
fn final_line_without_lf_is_ignored() {
    let server = TestServer::start();
    let mut setup = server.alice();
    setup.put("victim", b"v");
    drop(setup);

    let mut c = server.connect();
    c.send_raw(format!("AUTH {ALICE} {ALICE_PW}\nNOOP\nDEL victim").as_bytes());
    c.shutdown_write();
    assert_eq!(c.read_code(), 230);
    assert_eq!(c.read_code(), 200);
    c.expect_eof();
    assert!(server.user_dir(ALICE).join("victim").is_file());
}

#[test]
fn disconnect_mid_upload_leaves_no_new_file_and_keeps_old_version() {
    let server = TestServer::start();
    let mut c = server.alice();
    let old = pseudo_random_bytes(10, 20_000);
    c.put("doc", &old);

    // Interrupted overwrite.
    let mut u = server.alice();
    u.start_put("doc", 100_000);
    u.send_raw(&pseudo_random_bytes(11, 5000));
    // Interrupted new file.
    let mut v = server.alice();
    v.start_put("newdoc", 100_000);
    v.send_raw(&pseudo_random_bytes(12, 5000));
    // The in-progress upload is not visible meanwhile.
    assert_eq!(c.list_names(), vec!["doc".to_string()]);
    assert_eq!(c.get("doc"), old);
    drop(u);
    drop(v);

    server.assert_tmp_empty_within(Duration::from_secs(5));
    assert_eq!(c.get("doc"), old);
    c.expect("GET newdoc", 550);
    assert_eq!(c.list_names(), vec!["doc".to_string()]);
    assert!(!server.user_dir(ALICE).join("newdoc").exists());
    assert_eq!(fs::read(server.user_dir(ALICE).join("doc")).unwrap(), old);
}

#[test]
fn upload_in_progress_is_invisible_until_complete() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("rep", b"old version");

    let mut u = server.alice();
    let new = pseudo_random_bytes(13, 50_000);
    u.start_put("fresh", new.len());
    u.send_raw(&new[..10_000]);
    let mut r = server.alice();
    r.start_put("rep", new.len());
    r.send_raw(&new[..10_000]);
    thread::sleep(Duration::from_millis(100));

    assert_eq!(c.list_names(), vec!["rep".to_string()]);
    c.expect("GET fresh", 550);
    assert_eq!(c.get("rep"), b"old version");
    assert_eq!(dir_entries(&server.user_dir(ALICE)).len(), 1);

    u.send_raw(&new[10_000..]);
    assert_eq!(u.read_reply(), (226, stored(&new)));
    r.send_raw(&new[10_000..]);
    assert_eq!(r.read_reply(), (226, stored(&new)));
    assert_eq!(c.get("fresh"), new);
    assert_eq!(c.get("rep"), new);
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn user_directory_is_created_with_mode_0700() {
    let server = TestServer::start();
    let mut c = server.bob();
    c.put("x", b"y");
    assert_eq!(mode_of(&server.user_dir(BOB)), 0o700);
}

#[test]
fn upload_with_fsync_enabled_works() {
    let server = TestServer::builder().with_fsync().start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(14, 70_000);
    c.put("synced", &data);
    assert_eq!(c.get("synced"), data);
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn half_closed_client_completes_upload() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.start_put("last", 6);
    c.send_raw(b"payload"[..6].as_ref());
    c.shutdown_write();
    assert_eq!(c.read_reply(), (226, stored(b"payloa")));
    c.expect_eof();
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("last")).unwrap(),
        b"payloa"
    );
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn half_close_in_the_middle_of_payload_discards_upload() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("half", b"old");
    c.start_put("half", 100);
    c.send_raw(&[b'n'; 50]);
    c.shutdown_write();
    // No 226: the upload is incomplete. The server may say nothing or
    // report an error, but it must close.
    let rest = c.read_to_eof();
    assert!(
        !String::from_utf8_lossy(&rest).starts_with("226"),
        "incomplete upload answered {:?}",
        String::from_utf8_lossy(&rest)
    );
    server.assert_tmp_empty_within(Duration::from_secs(5));
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("half")).unwrap(),
        b"old"
    );
}

#[test]
fn large_listing_is_complete() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("seed", b"");
    let dir = server.user_dir(ALICE);
    // A listing far larger than any reasonable send buffer (~170 KB). Hard
    // links are cheap to create, unlike new files on some file systems.
    let mut want = vec!["seed".to_string()];
    let sources: Vec<String> = (0..4).map(|i| format!("source-{i}")).collect();
    for (i, src) in sources.iter().enumerate() {
        fs::write(dir.join(src), "x".repeat(i * 1000)).unwrap();
        want.push(src.clone());
    }
    let pad = "n".repeat(190);
    for i in 0..800 {
        let name = format!("{pad}-{i:05}.dat");
        fs::hard_link(dir.join(&sources[i % sources.len()]), dir.join(&name)).unwrap();
        want.push(name);
    }
    want.sort();
    let raw = c.list_raw();
    assert!(raw.len() > 150_000, "listing only {} bytes", raw.len());
    let listing = parse_listing(&raw);
    let mut names: Vec<String> = listing
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect();
    // Directory order: compared sorted.
    names.sort();
    assert_eq!(names, want);
    for e in &listing {
        let meta = fs::metadata(dir.join(String::from_utf8_lossy(&e.name).as_ref())).unwrap();
        assert_eq!(e.size, meta.len());
        assert_eq!(e.mtime as i64, meta.mtime());
    }
    c.noop();
}

#[test]
fn download_of_file_truncated_behind_servers_back_is_cut_off() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(20, 32 * 1024 * 1024);
    let path = server.plant_file(ALICE, "shrink.bin", &data);

    c.send_line("GET shrink.bin");
    assert_eq!(c.read_reply(), (150, data.len().to_string()));
    let head = c.read_exact_bytes(1000);
    // Truncate the same inode while the transfer is running.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let mut got = head;
    got.extend_from_slice(&c.read_to_eof());
    assert!(
        got.len() < data.len(),
        "received all {} announced bytes of a truncated file",
        got.len()
    );
    // Only the bytes read before the truncation are certain: the server
    // sends from the file itself (sendfile), so bytes still in flight may
    // already show the change (protocol.md). The client must treat the
    // whole download as failed anyway.
    assert_same_bytes(
        &got[..1000],
        &data[..1000],
        "prefix read before the truncation",
    );
    // The server survives and serves others.
    let mut d = server.alice();
    assert_eq!(d.get("shrink.bin").len(), 4096);
}

#[test]
fn download_sends_size_taken_at_open_when_file_grows() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(21, 24 * 1024 * 1024);
    let path = server.plant_file(ALICE, "grow.bin", &data);

    c.send_line("GET grow.bin");
    assert_eq!(c.read_reply(), (150, data.len().to_string()));
    let head = c.read_exact_bytes(1000);
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"NOOP\nappended tail that must not be sent\n")
            .unwrap();
    }
    let mut got = head;
    got.extend_from_slice(&c.read_exact_bytes(data.len() - 1000));
    assert_same_bytes(&got, &data, "download of a growing file");
    // Exactly the announced bytes: the next line answers our next command.
    c.send_line("DEL nosuch");
    assert_eq!(c.read_code(), 550);
}

#[test]
fn upload_whose_target_became_a_directory_gets_451_and_nothing_changes() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("seed", b"seed");
    c.start_put("target", 10);
    c.send_raw(b"01234");
    // Behind the server's back, the name becomes a (non-empty) directory.
    let dir = server.user_dir(ALICE).join("target");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("inside"), b"inside").unwrap();
    c.send_raw(b"56789");
    let (code, text) = c.read_reply();
    assert_eq!(
        code, 451,
        "rename over a directory answered `{code} {text}`"
    );
    assert!(dir.is_dir());
    assert_eq!(fs::read(dir.join("inside")).unwrap(), b"inside");
    server.assert_tmp_empty_within(Duration::from_secs(2));
    // The session goes on.
    c.noop();
    assert_eq!(c.get("seed"), b"seed");
}

#[test]
fn upload_that_cannot_be_stored_gets_451_and_keeps_old_version() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("doc", b"old version");
    // Make the server's temporary area unusable: replace it with a file.
    let tmp = server.tmp_dir();
    fs::remove_dir(&tmp).unwrap();
    fs::write(&tmp, b"not a directory").unwrap();

    // The error may come instead of 150, or after the payload.
    let (code, text) = c.put_reply(b"doc", b"new version");
    assert_eq!(
        code, 451,
        "PUT with broken storage answered `{code} {text}`"
    );
    c.noop();
    assert_eq!(c.get("doc"), b"old version");
    let (code, text) = c.put_reply(b"brand-new", b"data");
    assert_eq!(
        code, 451,
        "PUT with broken storage answered `{code} {text}`"
    );
    c.expect("GET brand-new", 550);

    // Once the storage works again, so do uploads.
    fs::remove_file(&tmp).unwrap();
    fs::create_dir(&tmp).unwrap();
    c.put("doc", b"new version");
    assert_eq!(c.get("doc"), b"new version");
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn size_with_leading_zeros_is_answered_as_a_plain_number() {
    let server = TestServer::start();
    let mut c = server.alice();
    assert_eq!(c.cmd("PUT 007 lz"), (150, "7".to_string()));
    c.send_raw(b"1234567");
    assert_eq!(c.read_reply(), (226, stored(b"1234567")));
    assert_eq!(c.get("lz"), b"1234567");
}

#[test]
fn empty_argument_after_the_space_is_501() {
    let server = TestServer::start();
    let mut c = server.alice();
    // Arguments are checked before state, so even AUTH on a logged-in
    // session is 501 here rather than 503.
    for line in ["GET ", "VIEW ", "DEL ", "PUT 5 ", "AUTH alice "] {
        assert_eq!(c.cmd(line).0, 501, "{line:?}");
    }
    let mut fresh = server.connect();
    assert_eq!(fresh.cmd("AUTH alice ").0, 501);
    // A 501 is not a failed login: three more wrong passwords are needed to be cut off.
    assert_eq!(fresh.cmd("AUTH alice wrong").0, 530);
    assert_eq!(fresh.cmd("AUTH alice wrong").0, 530);
    assert_eq!(fresh.cmd(&format!("AUTH {ALICE} {ALICE_PW}")).0, 230);
}
