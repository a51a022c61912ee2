#![no_main]
sluice_fuzz::target!("raft_dir");
