
#[test]
fn remote_wildcards_name_the_matching_files_of_a_folder() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let mut c = server.alice();
    c.expect("MKDIR photos", 257);
    c.expect("MKDIR photos/x.jpg.d", 257);
    for name in ["a.jpg", "b.jpg", "c.png"] {
        c.put(&format!("photos/{name}"), name.as_bytes());
    }
    ferry_ok(ferry(&server, work).args(["get", "photos/*.jpg"]));
    assert_eq!(fs::read(work.join("a.jpg")).unwrap(), b"a.jpg");
    assert_eq!(fs::read(work.join("b.jpg")).unwrap(), b"b.jpg");
    assert!(!work.join("c.png").exists());
    let out = ferry_ok(ferry(&server, work).args(["hash", "photos/?.png"]));
    assert!(out.contains("photos/c.png"), "{out}");
    let out = run_command_to_exit(
        ferry(&server, work).args(["rm", "photos/*.gif"]),
        Duration::from_secs(60),
    );
    assert!(out.stderr.contains("no remote file matches"), "{}", out.stderr);
    ferry_ok(ferry(&server, work).args(["rm", "photos/*"]));
    assert_eq!(listed(&mut c, "LIST photos").keys().collect::<Vec<_>>(), ["x.jpg.d/"]);
}
