//! Admission: accepting connections in batches, the limits per address and
//! in total, running out of descriptors (the spare, the backoff), a
//! trusted proxy's PROXY header before the session, and the session's
//! start behind its transport.

use super::*;

impl Reactor {
    pub(super) fn accept_batch(&mut self, index: usize) {
        let protocol = self.listeners[index].protocol;
        let role = self.listeners[index].role;
        let secure = self.listeners[index].tls;
        if self.spare.is_none() {
            self.spare = spare_descriptor().ok();
        }
        for _ in 0..ACCEPT_BATCH {
            let listener = &mut self.listeners[index];
            let (mut stream, peer) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    listener.pending = false;
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if sys::out_of_descriptors(&err) && self.spare.take().is_some() => {
                    // The kernel says so before it looks at the queue: only
                    // the accept with the spare's number tells whether a
                    // connection waits.
                    let waited = match listener.socket.accept() {
                        Ok((mut stream, peer)) => {
                            let refusal = Refusal::OutOfDescriptors;
                            refuse(&mut stream, protocol, refusal, &self.services);
                            crate::audit::Event::Limit {
                                limit: Refusal::OutOfDescriptors.limit(),
                            }
                            .record(peer, protocol);
                            Ok(())
                        }
                        Err(err) => Err(err),
                    };
                    // Taken back at once, the refused stream being closed.
                    self.spare = spare_descriptor().ok();
                    let now = Instant::now();
                    if waited.is_ok()
                        && self
                            .last_accept_warning
                            .is_none_or(|last| now.duration_since(last) >= ACCEPT_WARNING_INTERVAL)
                    {
                        self.last_accept_warning = Some(now);
                        log::warn!(
                            "accept failed: {err}; refusing new connections as temporary \
                             until descriptors are free (logged at most every {:?})",
                            ACCEPT_WARNING_INTERVAL
                        );
                    }
                    match waited {
                        Ok(()) => continue,
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            listener.pending = false;
                            return;
                        }
                        // Anything else: the pause below, next time.
                        Err(_) => {
                            listener.paused_until = Some(now + ACCEPT_BACKOFF);
                            return;
                        }
                    }
                }
                Err(err) => {
                    // Out of descriptors or memory: the connection stays in
                    // the backlog; accepting pauses briefly instead of
                    // spinning on the same error, and resumes by itself.
                    let now = Instant::now();
                    listener.paused_until = Some(now + ACCEPT_BACKOFF);
                    if self
                        .last_accept_warning
                        .is_none_or(|last| now.duration_since(last) >= ACCEPT_WARNING_INTERVAL)
                    {
                        self.last_accept_warning = Some(now);
                        log::warn!(
                            "accept failed: {err}; pausing new connections for {:?} \
                             (logged at most every {:?})",
                            ACCEPT_BACKOFF,
                            ACCEPT_WARNING_INTERVAL
                        );
                    }
                    return;
                }
            };
            let admitted = if protocol == Protocol::Control {
                let open = self.services.metrics.open_sessions(Protocol::Control);
                if open < MAX_CONTROL_SESSIONS as u64 {
                    Ok(())
                } else {
                    // Connections without the token cannot keep the
                    // operator out: the oldest gives way.
                    let oldest = self
                        .conns
                        .iter()
                        .filter_map(|(key, c)| Some((c.session.waiting_since()?, key)))
                        .min();
                    match oldest {
                        Some((_, key)) => {
                            let conn = &mut self.conns[key];
                            conn.session.give_way();
                            if !conn.queued {
                                conn.queued = true;
                                self.ready.push(key);
                            }
                            Ok(())
                        }
                        None => Err(Refusal::TooMany),
                    }
                }
            } else {
                self.connections.admit(peer.ip(), &self.services.policy)
            };
            if let Err(refusal) = admitted {
                if secure.is_none() {
                    refuse(&mut stream, protocol, refusal, &self.services);
                }
                let limit = refusal.limit();
                crate::audit::Event::Limit { limit }.record(peer, protocol);
                continue;
            }
            // A trusted load balancer says first who the client is; the
            // control port (loopback, the operator's) never reads a header.
            let trusted = protocol != Protocol::Control
                && (self.services.policy.trusted_proxies.iter()).any(|r| r.contains(peer.ip()));
            if trusted {
                self.begin_preface(stream, peer, protocol, role, secure);
            } else {
                self.start_session(stream, peer, protocol, role, secure, &[]);
            }
        }
        // The batch is used up; more may be waiting.
        self.listeners[index].pending = true;
    }

    /// Registers a connection for its session (admitted under the limits
    /// already), and hands it `early`: bytes that came before it (behind a
    /// PROXY header).
    pub(super) fn start_session(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        protocol: Protocol,
        role: HttpRole,
        secure: Option<tls::Front>,
        early: &[u8],
    ) {
        // Replies are single small writes; waiting for an ACK before
        // sending the next one would only add latency.
        if let Err(err) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {err}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut session = match role {
            HttpRole::Main => Session::new(protocol, peer, &self.services),
            HttpRole::Metrics => Session::Http(http::Session::with_role(peer, role)),
        };
        let mut transport = match (secure, &self.acceptor) {
            (Some(front), Some(acceptor)) => match acceptor.layer(front, Instant::now()) {
                Ok(layer) => Transport::tls(layer),
                Err(err) => {
                    log::error!("{peer}: cannot start TLS: {err}");
                    if protocol != Protocol::Control {
                        self.connections.release(peer.ip());
                    }
                    return;
                }
            },
            _ => Transport::plain(),
        };
        // With TLS every byte is encrypted in user space.
        if self.sendfile && !transport.is_tls() {
            session.send_files_directly(DIRECT_MIN);
        }
        if !early.is_empty() {
            self.services.metrics.received(early.len());
            // Bytes read past a PROXY header: the start of the TLS stream,
            // or of the session's own.
            match transport.layer_mut() {
                Some(layer) => layer.feed(early),
                None => session.receive(early, &self.services),
            }
        }
        let interest = interest_of(&session, &transport);
        let armed = earliest(session.deadline(&self.services), transport.deadline());
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            log::error!("{peer}: cannot register connection: {err}");
            if protocol != Protocol::Control {
                self.connections.release(peer.ip());
            }
            return;
        }
        log::info!("{peer} connected ({})", protocol.as_str());
        self.services.metrics.session_opened(protocol);
        entry.insert(Conn {
            stream,
            transport,
            peer,
            session,
            interest,
            readable: true,
            writable: true,
            queued: true,
            armed,
            waiting_check: false,
        });
        self.ready.push(key);
        if let Some(deadline) = armed {
            self.timers.push(Reverse((deadline, key)));
        }
    }

    /// Waits for a trusted proxy's PROXY header before any session starts.
    pub(super) fn begin_preface(
        &mut self,
        mut stream: TcpStream,
        proxy: SocketAddr,
        protocol: Protocol,
        role: HttpRole,
        secure: Option<tls::Front>,
    ) {
        let entry = self.prefaces.vacant_entry();
        let key = entry.key();
        let token = Token(PREFACE_BASE + key);
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log::error!("{proxy}: cannot register connection: {err}");
            self.connections.release(proxy.ip());
            return;
        }
        let preface = entry.insert(Preface::new(
            stream,
            proxy,
            protocol,
            role,
            secure,
            Instant::now() + preface::HEADER_TIMEOUT.min(self.services.policy.head_timeout),
        ));
        self.preface_timers.push(Reverse((preface.deadline, key)));
        self.prefaces_ready.push(key);
    }

    /// Reads the PROXY headers that have arrived, and closes the
    /// connections whose header is late.
    pub(super) fn read_prefaces(&mut self, now: Instant) {
        while let Some(&Reverse((when, key))) = self.preface_timers.peek() {
            if when > now {
                break;
            }
            self.preface_timers.pop();
            if self.prefaces.get(key).is_some_and(|p| p.deadline == when) {
                let preface = self.prefaces.remove(key);
                self.end_preface(preface, "no PROXY header within the deadline");
            }
        }
        for key in std::mem::take(&mut self.prefaces_ready) {
            let Some(preface) = self.prefaces.get_mut(key) else {
                continue;
            };
            match preface.read() {
                Step::Wait => {}
                Step::Failed(why) => {
                    let preface = self.prefaces.remove(key);
                    self.end_preface(preface, &why);
                }
                Step::Done { client, early } => {
                    let mut preface = self.prefaces.remove(key);
                    let _ = self.poll.registry().deregister(&mut preface.stream);
                    self.proxied(preface, client, &early);
                }
            }
        }
    }

    /// A trusted proxy broke the rule that it speaks first: closed without
    /// a word, since it is not known which protocol would be understood.
    pub(super) fn end_preface(&mut self, mut preface: Preface, why: &str) {
        log::warn!(
            "{}: closing a connection from a trusted proxy: {why}",
            preface.proxy
        );
        let _ = self.poll.registry().deregister(&mut preface.stream);
        self.connections.release(preface.proxy.ip());
    }

    /// The header named the client (or none: the proxy's own connection,
    /// which keeps its admission): it is the peer from now on, counted
    /// under the limits in the proxy's place.
    pub(super) fn proxied(&mut self, preface: Preface, client: Option<SocketAddr>, early: &[u8]) {
        let Preface {
            mut stream,
            proxy,
            protocol,
            role,
            secure,
            ..
        } = preface;
        let peer = match client {
            Some(client) => {
                self.connections.release(proxy.ip());
                if let Err(refusal) = self.connections.admit(client.ip(), &self.services.policy) {
                    refuse(&mut stream, protocol, refusal, &self.services);
                    let limit = refusal.limit();
                    crate::audit::Event::Limit { limit }.record(client, protocol);
                    return;
                }
                log::debug!("{proxy}: proxying for {client}");
                client
            }
            None => proxy,
        };
        self.start_session(stream, peer, protocol, role, secure, early);
    }
}

/// Turns a connection away before any session starts: one non-blocking
/// write of the refusal, then the stream is dropped (closed).
pub(super) fn refuse(
    stream: &mut TcpStream,
    protocol: Protocol,
    refusal: Refusal,
    services: &Services,
) {
    let mut out = Vec::new();
    let failure = Failure::Connections(refusal);
    let code = match protocol {
        Protocol::Line | Protocol::Control => {
            let reply = failure.reply();
            reply.write_to(&mut out);
            reply.code()
        }
        Protocol::Http => {
            let (status, text) = failure.http();
            let body = format!("{text}\n");
            let mut fields = vec![("Content-Type", "text/plain; charset=utf-8")];
            if refusal == Refusal::OutOfDescriptors {
                // Moments, most likely: the client may come right back.
                fields.insert(0, ("Retry-After", "1"));
            }
            crate::protocol::http::write_head(
                &mut out,
                status,
                &fields,
                Some(body.len() as u64),
                true,
            );
            out.extend_from_slice(body.as_bytes());
            status
        }
    };
    services.metrics.reply(protocol, code);
    let _ = stream.write(&out);
    let _ = stream.shutdown(Shutdown::Write);
}

/// The descriptor kept in reserve (see `Reactor::spare`).
pub(super) fn spare_descriptor() -> io::Result<std::fs::File> {
    std::fs::File::open("/dev/null")
}
