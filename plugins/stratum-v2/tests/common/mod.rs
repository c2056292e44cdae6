//! The pool's end of a Stratum V2 connection, built on the reference
//! codecs (`noise_sv2` responder, `codec_sv2`), for the plugin's tests.

#![allow(dead_code)]

use codec_sv2::{Decrypted, Handshake, NoiseDecoder, NoiseEncoder};
use codec_sv2::{TransportDecryptState, TransportEncryptState};
use framing_sv2::framing::MessageFrame;
use noise_sv2::Responder;
use rand::SeedableRng;
use secp256k1::{Keypair, Secp256k1};
use stratum_v2::AuthorityKey;

/// 2026-12-01T00:00:00Z.
pub const NOW: u32 = 1_796_083_200;

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// An authority key pair and its pinned form.
pub fn authority(seed: u64) -> (Keypair, AuthorityKey) {
    let secp = Secp256k1::new();
    let kp = Keypair::new(&secp, &mut rng(seed));
    let key = AuthorityKey(kp.x_only_public_key().0.serialize());
    (kp, key)
}

/// The pool side after the handshake.
pub struct Pool {
    encrypt: TransportEncryptState,
    decrypt: Option<TransportDecryptState>,
    encoder: NoiseEncoder,
    decoder: NoiseDecoder,
    inbox: Vec<u8>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    /// Answers the miner's first 64 bytes with a certificate signed by
    /// `kp` at `pool_now`, valid `validity` seconds: (pool, reply bytes).
    pub fn accept(first: &[u8], kp: Keypair, pool_now: u32, validity: u32) -> (Pool, Vec<u8>) {
        let mut r = rng(99);
        let responder = Responder::new_with_rng(kp, validity, &mut r);
        let (reply, transport) = Handshake::responder(responder)
            .step_1_with_now_rng(first.try_into().expect("64 bytes"), pool_now, &mut r)
            .unwrap();
        let mut encoder = NoiseEncoder::new();
        let reply = AsRef::<[u8]>::as_ref(&encoder.encode_handshake(reply)).to_vec();
        let (encrypt, decrypt) = transport.split();
        (
            Pool {
                encrypt,
                decrypt: Some(decrypt),
                encoder,
                decoder: NoiseDecoder::new(),
                inbox: Vec::new(),
            },
            reply,
        )
    }

    /// One message, encrypted.
    pub fn send<M: binary_sv2::Serialize + binary_sv2::GetSize>(
        &mut self,
        m: M,
        msg_type: u8,
        channel_msg: bool,
    ) -> Vec<u8> {
        let frame = MessageFrame::from_message(m, msg_type, 0, channel_msg).unwrap();
        let b = self
            .encoder
            .encode_transport(frame, &mut self.encrypt)
            .unwrap();
        AsRef::<[u8]>::as_ref(&b).to_vec()
    }

    /// Every whole frame in `bytes` (and what was buffered): (type, payload).
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.inbox.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let need = self.decoder.writable_len();
            if self.inbox.len() < need {
                return out;
            }
            self.decoder.writable().copy_from_slice(&self.inbox[..need]);
            self.inbox.drain(..need);
            match self
                .decoder
                .next_transport_frame(self.decrypt.take().unwrap())
                .unwrap()
            {
                Decrypted::Frame(mut f, s) => {
                    self.decrypt = Some(s);
                    out.push((f.header().msg_type(), f.payload().to_vec()));
                }
                Decrypted::Incomplete(_, s) => self.decrypt = Some(s),
            }
        }
    }
}
