use super::writer::net_changes;
use super::*;

fn record(module: &str, n: u32, expires: SystemTime) -> Record {
    Record {
        module: module.into(),
        input: "in".into(),
        from: "dev/a".into(),
        from_output: "out".into(),
        priority: 3,
        expires,
        bag: format!("%24.cid={n}").into(),
        body: Bytes::from(format!("body {n}")),
    }
}

#[test]
fn priorities_fit_one_byte_and_the_default_comes_back() {
    for p in [0, 9, crate::routes::DEFAULT_PRIORITY] {
        assert_eq!(record_priority(row_priority(p)), p);
    }
    assert_eq!(
        row_priority(crate::routes::DEFAULT_PRIORITY),
        DEFAULT_ROW_PRIORITY
    );
}

#[test]
fn messages_survive_a_reopen_in_order_and_removals_are_kept() {
    let dir = std::env::temp_dir().join(format!("hub-store-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let expires = UNIX_EPOCH + Duration::from_millis(unix_ms(SystemTime::now()) + 60_000);
    let seqs = {
        let store = Store::open(&dir).unwrap();
        assert!(store.take_loaded().is_empty());
        let mut seqs: Vec<u64> = store
            .put([record("b", 1, expires), record("c", 2, expires)].into_iter())
            .unwrap()
            .collect();
        seqs.extend(store.put([record("b", 3, expires)].into_iter()).unwrap());
        store.remove(seqs[1]);
        seqs
    };
    let store = Store::open(&dir).unwrap();
    let loaded = store.take_loaded();
    assert_eq!(
        loaded,
        vec![
            (seqs[0], record("b", 1, expires)),
            (seqs[2], record("b", 3, expires))
        ]
    );
    // Numbers go on increasing after a restart.
    let more = store.put([record("b", 4, expires)].into_iter()).unwrap();
    assert!(more.start > seqs[2]);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_message_put_and_removed_in_one_batch_is_never_written() {
    let expires = SystemTime::now();
    let mut batch = vec![
        Op::Put(1, record("b", 1, expires)),
        Op::Put(2, record("b", 2, expires)),
        Op::Remove(1),
        Op::Remove(7),
    ];
    let changes = net_changes(&mut batch);
    assert_eq!(changes.puts, vec![(2, record("b", 2, expires))]);
    // A removal of a message put in an earlier batch is written.
    assert_eq!(changes.removes, vec![7]);
    assert!(changes.flushes.is_empty() && batch.is_empty());
}

#[test]
fn garbage_is_refused_naming_the_file_and_the_way_out() {
    let dir = std::env::temp_dir().join(format!("hub-store-garbage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = Store::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("remove {}", path.display())),
        "{text}"
    );
    // Refused, not replaced: the file is as it was.
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 8192]);
    let _ = std::fs::remove_dir_all(&dir);
}
