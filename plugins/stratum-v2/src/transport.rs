//! The encrypted Stratum V2 connection, sans-IO: the Noise NX handshake
//! (`Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256`) as the initiator, with
//! the pool's certificate checked against the pinned authority key and the
//! host's wall clock, then Sv2 frames in and out through the reference
//! codecs (`noise_sv2`, `codec_sv2`, `framing_sv2`).
//!
//! Bytes from the pool go in with [`Transport::receive`] in whatever pieces
//! TCP delivered them; whole frames come out. Every failure is a typed
//! [`TransportError`] with a reason an operator can act on; nothing here
//! panics on the pool's bytes.

use codec_sv2::{Decrypted, Handshake, InitiatorSent, NoiseDecoder, NoiseEncoder};
use codec_sv2::{TransportDecryptState, TransportEncryptState};
use framing_sv2::framing::MessageFrame;
use noise_sv2::{INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE, Initiator};

use crate::authority::AuthorityKey;

/// Seconds of clock difference the certificate check allows (as SRI).
const LEEWAY_S: u32 = 10;

/// Why the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The pool's certificate is signed by another key than the pinned one
    /// (or not signed at all): the peer is not the pool the URL names.
    #[error(
        "the pool's certificate is not signed by the authority key {fingerprint} pinned for it: refusing the connection"
    )]
    WrongAuthority {
        /// Fingerprint of the pinned key.
        fingerprint: String,
    },
    /// The certificate is outside its validity period by the host's clock.
    #[error(
        "the pool's certificate is valid from {valid_from} to {not_valid_after} (Unix time) but the clock says {now}: {what}"
    )]
    CertificateTime {
        /// Start of validity, Unix seconds.
        valid_from: u32,
        /// End of validity, Unix seconds.
        not_valid_after: u32,
        /// The host's wall clock, Unix seconds.
        now: u32,
        /// "expired" or "not valid yet".
        what: &'static str,
    },
    /// The handshake failed for another reason (a corrupt or foreign reply).
    #[error("Noise handshake failed: {0}")]
    Handshake(String),
    /// A frame could not be decrypted or is malformed.
    #[error("protocol error: {0}")]
    Frame(String),
    /// Something was sent before the handshake finished, or after a failure.
    #[error("the connection is not open ({0})")]
    NotOpen(&'static str),
}

/// One Sv2 frame from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Extension type without the channel bit (0: the standard protocols).
    pub extension_type: u16,
    /// Message type.
    pub msg_type: u8,
    /// Whether the message is addressed to a channel.
    pub channel_msg: bool,
    /// The serialized message.
    pub payload: Vec<u8>,
}

/// What [`Transport::receive`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: the pool is the one the authority key names.
    Established,
    /// A frame arrived.
    Frame(Frame),
}

enum State {
    /// Our ephemeral key is out; waiting for the responder's reply.
    AwaitingReply(Box<Handshake<InitiatorSent>>),
    /// Encrypted frames both ways.
    Open {
        encrypt: TransportEncryptState,
        // Taken while a frame decrypts (the codec passes it by value).
        decrypt: Option<TransportDecryptState>,
        decoder: Box<NoiseDecoder>,
        encoder: Box<NoiseEncoder>,
    },
    /// A failure ended it.
    Broken,
}

/// An Sv2 connection to one pool.
pub struct Transport {
    state: State,
    inbox: Vec<u8>,
    authority: AuthorityKey,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::AwaitingReply(_) => "awaiting handshake reply",
            State::Open { .. } => "open",
            State::Broken => "broken",
        };
        f.debug_struct("Transport")
            .field("state", &state)
            .field("buffered", &self.inbox.len())
            .finish()
    }
}

impl Transport {
    /// Starts the handshake with the pool `authority` names; the bytes to
    /// send first (our ephemeral key, 64 bytes).
    pub fn start<R: rand::Rng + rand::CryptoRng>(
        authority: AuthorityKey,
        rng: &mut R,
    ) -> Result<(Transport, Vec<u8>), TransportError> {
        let initiator = Initiator::from_raw_k_with_rng(authority.0, rng).map_err(|_| {
            TransportError::WrongAuthority {
                fingerprint: authority.fingerprint(),
            }
        })?;
        let (message, sent) = Handshake::initiator(initiator)
            .step_0()
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        let mut encoder = NoiseEncoder::new();
        let first = AsRef::<[u8]>::as_ref(&encoder.encode_handshake(message)).to_vec();
        Ok((
            Transport {
                state: State::AwaitingReply(Box::new(sent)),
                inbox: Vec::new(),
                authority,
            },
            first,
        ))
    }

    /// Whether the handshake has completed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Takes bytes from the pool; `now_s` is the host's wall clock in Unix
    /// seconds (the certificate's validity is checked against it).
    pub fn receive(&mut self, bytes: &[u8], now_s: u32) -> Result<Vec<Event>, TransportError> {
        self.inbox.extend_from_slice(bytes);
        let mut events = Vec::new();
        let result = self.drain(now_s, &mut events);
        if result.is_err() {
            self.state = State::Broken;
            self.inbox.clear();
        }
        result.map(|()| events)
    }

    fn drain(&mut self, now_s: u32, events: &mut Vec<Event>) -> Result<(), TransportError> {
        loop {
            match &mut self.state {
                State::Broken => return Err(TransportError::NotOpen("it failed earlier")),
                State::AwaitingReply(_) => {
                    if self.inbox.len() < INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE {
                        return Ok(());
                    }
                    let mut reply = [0u8; INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE];
                    reply.copy_from_slice(&self.inbox[..INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE]);
                    self.inbox
                        .drain(..INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE);
                    let State::AwaitingReply(handshake) =
                        std::mem::replace(&mut self.state, State::Broken)
                    else {
                        return Err(TransportError::NotOpen("the handshake state was lost"));
                    };
                    let transport = handshake
                        .step_2_with_now(reply, now_s)
                        .map_err(|e| self.handshake_error(e, now_s))?;
                    let (encrypt, decrypt) = transport.split();
                    self.state = State::Open {
                        encrypt,
                        decrypt: Some(decrypt),
                        decoder: Box::new(NoiseDecoder::new()),
                        encoder: Box::new(NoiseEncoder::new()),
                    };
                    events.push(Event::Established);
                }
                State::Open {
                    decrypt, decoder, ..
                } => {
                    let need = decoder.writable_len();
                    if need == 0 || self.inbox.len() < need {
                        return Ok(());
                    }
                    decoder.writable().copy_from_slice(&self.inbox[..need]);
                    self.inbox.drain(..need);
                    let state = decrypt
                        .take()
                        .ok_or(TransportError::NotOpen("a frame failed to decrypt"))?;
                    match decoder.next_transport_frame(state) {
                        Ok(Decrypted::Frame(mut frame, state)) => {
                            *decrypt = Some(state);
                            let header = frame.header();
                            events.push(Event::Frame(Frame {
                                extension_type: header.ext_type_without_channel_msg(),
                                msg_type: header.msg_type(),
                                channel_msg: header.channel_msg(),
                                payload: frame.payload().to_vec(),
                            }));
                        }
                        Ok(Decrypted::Incomplete(_, state)) => *decrypt = Some(state),
                        Err(e) => return Err(TransportError::Frame(e.to_string())),
                    }
                }
            }
        }
    }

    /// Says why the pool's handshake reply was refused.
    fn handshake_error(&self, e: codec_sv2::Error, now_s: u32) -> TransportError {
        match e {
            codec_sv2::Error::NoiseSv2Error(noise_sv2::Error::InvalidCertificate(cert)) => {
                let (from, until) = (cert.valid_from, cert.not_valid_after);
                if now_s.saturating_add(LEEWAY_S) < from {
                    TransportError::CertificateTime {
                        valid_from: from,
                        not_valid_after: until,
                        now: now_s,
                        what: "not valid yet (is the clock right?)",
                    }
                } else if now_s > until.saturating_add(LEEWAY_S) {
                    TransportError::CertificateTime {
                        valid_from: from,
                        not_valid_after: until,
                        now: now_s,
                        what: "expired",
                    }
                } else {
                    TransportError::WrongAuthority {
                        fingerprint: self.authority.fingerprint(),
                    }
                }
            }
            other => TransportError::Handshake(other.to_string()),
        }
    }

    /// Encrypts one message into the bytes to send.
    pub fn send<M>(
        &mut self,
        message: M,
        msg_type: u8,
        extension_type: u16,
        channel_msg: bool,
    ) -> Result<Vec<u8>, TransportError>
    where
        M: binary_sv2::Serialize + binary_sv2::GetSize,
    {
        let State::Open {
            encrypt, encoder, ..
        } = &mut self.state
        else {
            return Err(TransportError::NotOpen("the handshake has not finished"));
        };
        let frame = MessageFrame::from_message(message, msg_type, extension_type, channel_msg)
            .map_err(|e| {
                TransportError::Frame(format!("cannot frame message {msg_type:#04x}: {e:?}"))
            })?;
        let bytes = encoder
            .encode_transport(frame, encrypt)
            .map_err(|e| TransportError::Frame(e.to_string()))?;
        Ok(AsRef::<[u8]>::as_ref(&bytes).to_vec())
    }
}
