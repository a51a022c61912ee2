#![no_main]
sluice_fuzz::target!("kafka_requests");
