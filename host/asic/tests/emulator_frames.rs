//! The emulator answering raw frames, without the driver.

use std::time::{Duration, Instant};

use hashwatt_asic::emulator::{Emulator, EmulatorConfig};
use hashwatt_asic::model::Model;
use hashwatt_asic::protocol::{
    Command, Dest, JobFrame, ParseEvent, Reply, ReplyParser, chip_id_value, reg,
};
use hashwatt_asic::serial::{SerialLink, TtyPort};

const LIMIT: Duration = Duration::from_secs(60);

fn read_replies(port: &mut TtyPort, want: usize) -> Vec<Reply> {
    let mut parser = ReplyParser::new();
    let mut ev = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + LIMIT;
    loop {
        let replies: Vec<Reply> = ev
            .iter()
            .filter_map(|e| match e {
                ParseEvent::Reply(r) => Some(*r),
                _ => None,
            })
            .collect();
        if replies.len() >= want || Instant::now() >= deadline {
            return replies;
        }
        let n = port.read(&mut buf, Duration::from_millis(50)).unwrap();
        parser.push(&buf[..n], &mut ev);
    }
}

#[test]
fn emulator_answers_chip_id_per_chip_and_follows_addressing() {
    let emu = Emulator::spawn(EmulatorConfig {
        model: Model::BM1368,
        chips: 3,
        hashrate_hs: 1e6,
        difficulty: 1.0 / 65536.0,
    })
    .unwrap();
    let mut port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    let read_id = Command::Read {
        dest: Dest::All,
        reg: reg::CHIP_ID,
    };
    port.write_all(read_id.encode().as_bytes()).unwrap();
    let r = read_replies(&mut port, 3);
    assert_eq!(r.len(), 3);
    for x in &r {
        let Reply::Register(g) = x else {
            panic!("{x:?}")
        };
        assert_eq!(g.value, chip_id_value(Model::BM1368, 0));
    }
    port.write_all(Command::ChainInactive.encode().as_bytes())
        .unwrap();
    for a in [0u8, 64, 128] {
        port.write_all(Command::SetAddress(a).encode().as_bytes())
            .unwrap();
    }
    // A read to one address gets one answer, from that chip.
    port.write_all(
        Command::Read {
            dest: Dest::Chip(64),
            reg: reg::CHIP_ID,
        }
        .encode()
        .as_bytes(),
    )
    .unwrap();
    let r = read_replies(&mut port, 1);
    assert_eq!(
        r,
        vec![Reply::Register(hashwatt_asic::protocol::RegisterReply {
            value: chip_id_value(Model::BM1368, 64),
            chip_address: 64,
            reg: 0
        })]
    );
    assert_eq!(emu.chip_address(2), Some(128));
}

#[test]
fn emulator_ignores_and_counts_bad_job_frames() {
    let emu = Emulator::spawn(EmulatorConfig {
        model: Model::BM1366,
        chips: 1,
        hashrate_hs: 4096.0 * 100.0,
        difficulty: 1.0 / 1_048_576.0,
    })
    .unwrap();
    let mut port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    let mut frame = JobFrame::from_header(0x08, &[3u8; 80]).encode();
    frame[30] ^= 0x01;
    port.write_all(&frame).unwrap();
    let deadline = Instant::now() + LIMIT;
    while emu.stats().frames_rejected < 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(emu.stats().jobs, 0);
    // No job, so no nonces.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(emu.stats().nonces, vec![0]);
    // The good frame is taken and nonces follow.
    frame[30] ^= 0x01;
    port.write_all(&frame).unwrap();
    let r = read_replies(&mut port, 2);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(
        |x| matches!(x, Reply::Nonce(n) if Model::BM1366.job_id_from_reply(n.id_byte) == 0x08)
    ));
    assert_eq!(emu.stats().jobs, 1);
}
