//! What a circuit asks, one message at a time: version, host and user names, channel
//! creation, reads, writes (with or without a completion), subscriptions and their updates,
//! clearing channels; rights resent when the access rules change.

use super::*;

impl<S: Source> Core<S> {
    pub(super) fn process_input(&mut self, id: usize, c: &mut Circuit) {
        let mut used = 0;
        while c.closing.is_none() {
            let buf = &c.inbuf[used..];
            let (h, n) = match decode_header(buf, MAX_PAYLOAD) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    self.counters.errors.add(1);
                    let mut req = Header::default();
                    if let Ok(Some((h, _))) = decode_header(buf, u32::MAX) {
                        req = h;
                    }
                    proto::push_error(&mut c.out, &req, 0, Status::TOLARGE, &e.to_string());
                    c.closing = Some(Closing::Protocol(e.to_string()));
                    break;
                }
            };
            let total = n + h.payload_size as usize;
            if buf.len() < total {
                break;
            }
            let payload = c.inbuf[used + n..used + total].to_vec();
            used += total;
            self.handle(id, c, &h, &payload);
        }
        c.inbuf.drain(..used);
        if c.inbuf.capacity() > 4 * MAX_PAYLOAD as usize && c.inbuf.len() < 1024 {
            c.inbuf.shrink_to(1024);
        }
    }

    pub(super) fn identity<'a>(c: &'a Circuit) -> Identity<'a> {
        Identity {
            user: &c.user,
            host: &c.host,
            peer: c.peer.ip(),
        }
    }

    /// A client's rights to a PV: those of the PV's access group, none if the PV list no
    /// longer lets us serve it (after a reload), never write to a read-only variable.
    pub(super) fn rights_of(&self, c: &Circuit, pv: &Pv) -> u32 {
        let Some(g) = super::pv_group(&self.access, pv) else {
            return 0;
        };
        let mut r = self.access.rights(g, &Self::identity(c));
        if !pv.writable() {
            r &= !ACCESS_WRITE;
        }
        r
    }

    pub(super) fn resend_rights(&mut self, c: &mut Circuit) {
        let mut changed = Vec::new();
        for ch in c.channels.values() {
            let r = self.rights_of(c, &ch.pv);
            if r != ch.rights {
                changed.push((ch.cid, r));
            }
        }
        for (cid, r) in changed {
            if let Some(ch) = c.channels.values_mut().find(|ch| ch.cid == cid) {
                ch.rights = r;
            }
            Header::new(cmd::ACCESS_RIGHTS, 0, 0, 0, cid, r).encode(&mut c.out);
        }
    }

    pub(super) fn bad(
        &mut self,
        c: &mut Circuit,
        h: &Header,
        cid: u32,
        status: Status,
        text: &str,
    ) {
        self.counters.errors.add(1);
        proto::push_error(&mut c.out, h, cid, status, text);
    }

    pub(super) fn handle(&mut self, id: usize, c: &mut Circuit, h: &Header, payload: &[u8]) {
        let req = match parse_request(h, payload) {
            Ok(r) => r,
            Err(e) => {
                let cid = if h.cmd == cmd::CREATE_CHAN { h.p1 } else { 0 };
                if h.cmd == cmd::CREATE_CHAN {
                    self.counters.errors.add(1);
                    Header::new(cmd::CREATE_CH_FAIL, 0, 0, 0, cid, 0).encode(&mut c.out);
                } else {
                    self.bad(c, h, cid, Status::INTERNAL, &e.to_string());
                }
                return;
            }
        };
        match req {
            Request::Version { .. } => proto::push_version(&mut c.out),
            Request::Echo => Header::new(cmd::ECHO, 0, 0, 0, 0, 0).encode(&mut c.out),
            Request::ClientName(u) => {
                c.user = u.to_owned();
                self.resend_rights(c);
            }
            Request::HostName(hn) => {
                c.host = hn.to_owned();
                self.resend_rights(c);
            }
            Request::EventsOff => c.events_on = false,
            Request::EventsOn => {
                c.events_on = true;
                self.flush_pending(c);
            }
            Request::ReadSync | Request::Search { .. } => {}
            Request::CreateChan { cid, name, .. } => self.create(c, cid, name),
            Request::Read {
                dtype,
                count,
                sid,
                ioid,
                notify,
            } => self.read(c, h, dtype, count, sid, ioid, notify),
            Request::Write {
                dtype,
                count,
                sid,
                notify,
                data,
                ..
            } => self.write(id, c, h, dtype, count, sid, notify, data),
            Request::EventAdd {
                dtype,
                count,
                sid,
                subid,
                mask,
            } => self.subscribe(id, c, h, dtype, count, sid, subid, mask),
            Request::EventCancel {
                dtype,
                count,
                sid,
                subid,
            } => {
                if let Some(ch) = c.channels.get_mut(&sid) {
                    if let Some(sub) = ch.subs.remove(&subid) {
                        c.nsubs -= 1;
                        self.unwatch(id, sid, subid, sub.watch);
                    }
                    Header::new(cmd::EVENT_ADD, 0, dtype, count, sid, subid).encode(&mut c.out);
                } else {
                    self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
                }
            }
            Request::ClearChannel { sid, cid } => {
                if c.channels.contains_key(&sid) {
                    self.drop_channel(id, c, sid);
                    Header::new(cmd::CLEAR_CHANNEL, 0, 0, 0, sid, cid).encode(&mut c.out);
                } else {
                    self.bad(c, h, cid, Status::BADCHID, "no channel of that id");
                }
            }
            Request::Other(code) => {
                let text = format!("command {code} is not one a server takes");
                self.bad(c, h, 0, Status::INTERNAL, &text);
            }
        }
    }

    pub(super) fn create(&mut self, c: &mut Circuit, cid: u32, name: &str) {
        let pv = if c.channels.len() >= MAX_CHANNELS {
            None
        } else {
            resolve(&mut self.source, name).filter(|pv| super::pv_group(&self.access, pv).is_some())
        };
        let Some(mut pv) = pv else {
            Header::new(cmd::CREATE_CH_FAIL, 0, 0, 0, cid, 0).encode(&mut c.out);
            return;
        };
        let b = pv.binding();
        let key = (b.process.clone(), b.generation, b.spec().name.clone());
        pv.deadbands = self.deadbands.entry(key).or_default().clone();
        let sid = self.next_sid;
        self.next_sid = self.next_sid.wrapping_add(1).max(1);
        let rights = self.rights_of(c, &pv);
        let (base, count) = pv.native();
        Header::new(cmd::ACCESS_RIGHTS, 0, 0, 0, cid, rights).encode(&mut c.out);
        Header::new(
            cmd::CREATE_CHAN,
            0,
            DbrType::plain(base).code(),
            count,
            cid,
            sid,
        )
        .encode(&mut c.out);
        self.counters.channels.add(1);
        c.channels.insert(
            sid,
            Channel {
                cid,
                pv,
                rights,
                subs: HashMap::new(),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn read(
        &mut self,
        c: &mut Circuit,
        h: &Header,
        dtype: u16,
        count: u32,
        sid: u32,
        ioid: u32,
        notify: bool,
    ) {
        let Some(ch) = c.channels.get(&sid) else {
            return self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
        };
        let cid = ch.cid;
        if ch.rights & ACCESS_READ == 0 {
            return self.bad(c, h, cid, Status::NORDACCESS, "no read access");
        }
        let t = match DbrType::from_code(dtype) {
            Ok(t) => t,
            Err(e) => return self.bad(c, h, cid, Status::BADTYPE, &e.to_string()),
        };
        let sample = self.source.read(ch.pv.binding());
        self.scratch.clear();
        match ch.pv.encode(&sample, t, count, &mut self.scratch) {
            Ok(e) => {
                let n = e.count;
                let code = if notify { cmd::READ_NOTIFY } else { cmd::READ };
                let p1 = if notify { Status::NORMAL.0 } else { sid };
                proto::push_message(
                    &mut c.out,
                    Header::new(code, 0, dtype, n, p1, ioid),
                    &self.scratch,
                );
            }
            Err(status) => {
                let why = match &sample {
                    Err(ReadFail::Bad(w)) => w.clone(),
                    Err(ReadFail::Gone) => "the process is gone".to_owned(),
                    Ok(_) => format!("the value has no conversion to DBR type {dtype}"),
                };
                self.bad(c, h, cid, status, &why);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn write(
        &mut self,
        id: usize,
        c: &mut Circuit,
        h: &Header,
        dtype: u16,
        count: u32,
        sid: u32,
        notify: bool,
        data: &[u8],
    ) {
        let Some(ch) = c.channels.get(&sid) else {
            return self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
        };
        let cid = ch.cid;
        if ch.rights & ACCESS_WRITE == 0 {
            let why = if ch.pv.writable() {
                format!(
                    "{}: the gateway's access rules give you no write access",
                    ch.pv.name
                )
            } else {
                format!("{} is read-only", ch.pv.name)
            };
            self.counters.put_errors.add(1);
            return self.bad(c, h, cid, Status::NOWTACCESS, &why);
        }
        if matches!(ch.pv.field, Field::Mdel | Field::Adel) {
            let v = match decode_put(dtype, count, data) {
                Ok(proto::PutValue::Int(i)) => Some(i as f64),
                Ok(proto::PutValue::Float(f)) if f.is_finite() => Some(f),
                Ok(proto::PutValue::Text(t)) => {
                    t.trim().parse::<f64>().ok().filter(|f| f.is_finite())
                }
                _ => None,
            };
            let Some(v) = v else {
                self.counters.put_errors.add(1);
                let why = format!("{}: a deadband is a number", ch.pv.name);
                return self.bad(c, h, cid, Status::BADTYPE, &why);
            };
            ch.pv.deadbands.set(ch.pv.field, v);
            self.counters.puts.add(1);
            if notify {
                Header::new(cmd::WRITE_NOTIFY, 0, dtype, count, Status::NORMAL.0, h.p2)
                    .encode(&mut c.out);
            }
            return;
        }
        let line = decode_put(dtype, count, data)
            .map_err(|e| (Status::BADTYPE, e.to_string()))
            .and_then(|v| ch.pv.put_line(&v));
        match line {
            Ok(_) if c.puts_waiting >= MAX_PUTS_WAITING => {
                self.counters.put_errors.add(1);
                let why = format!(
                    "{MAX_PUTS_WAITING} writes of this client are still waiting for their owners: wait for their answers"
                );
                self.bad(c, h, cid, Status::PUTFAIL, &why);
            }
            Ok(line) => {
                c.puts_waiting += 1;
                let process = ch.pv.binding().process.clone();
                self.writers.submit(
                    &process,
                    WriteJob {
                        line,
                        reply: PutReply {
                            circuit: id,
                            req: *h,
                            cid,
                            notify,
                        },
                    },
                );
            }
            Err((status, why)) => {
                self.counters.put_errors.add(1);
                self.bad(c, h, cid, status, &why);
            }
        }
    }

    pub(super) fn put_done(&mut self, c: &mut Circuit, d: WriteDone) {
        c.puts_waiting = c.puts_waiting.saturating_sub(1);
        let r = d.reply;
        match d.result {
            Ok(()) => {
                self.counters.puts.add(1);
                if r.notify {
                    Header::new(
                        cmd::WRITE_NOTIFY,
                        0,
                        r.req.data_type,
                        r.req.count,
                        Status::NORMAL.0,
                        r.req.p2,
                    )
                    .encode(&mut c.out);
                }
            }
            Err((status, text)) => {
                self.counters.put_errors.add(1);
                proto::push_error(&mut c.out, &r.req, r.cid, status, &text);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe(
        &mut self,
        id: usize,
        c: &mut Circuit,
        h: &Header,
        dtype: u16,
        count: u32,
        sid: u32,
        subid: u32,
        mask: u16,
    ) {
        let nsubs = c.nsubs;
        let Some(ch) = c.channels.get_mut(&sid) else {
            return self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
        };
        let cid = ch.cid;
        let t = match DbrType::from_code(dtype) {
            Ok(t) => t,
            Err(e) => return self.bad(c, h, cid, Status::BADTYPE, &e.to_string()),
        };
        if ch.rights & ACCESS_READ == 0 {
            return self.bad(c, h, cid, Status::NORDACCESS, "no read access");
        }
        if nsubs >= MAX_SUBS || ch.subs.contains_key(&subid) {
            return self.bad(
                c,
                h,
                cid,
                Status::ADDFAIL,
                "too many subscriptions on this circuit, or that id is in use",
            );
        }
        let watch = self.source.watch(ch.pv.binding());
        self.watchers
            .entry(watch)
            .or_default()
            .push((id, sid, subid));
        // The first update: the value now.
        let sample = self.source.read(ch.pv.binding());
        let mut sub = Sub {
            dtype: t,
            count,
            mask,
            watch,
            pending: false,
            last_number: None,
            last_alarm: (0, 0),
        };
        if Self::encode_update(
            &mut self.scratch,
            &mut c.out,
            &ch.pv,
            &sample,
            &mut sub,
            subid,
            true,
        ) {
            self.counters.updates.add(1);
        }
        ch.subs.insert(subid, sub);
        c.nsubs += 1;
        self.counters.monitors.add(1);
    }

    /// Appends a monitor update for `sub` if its mask and the deadbands let it through (the
    /// first update always goes); false if nothing was appended.
    pub(super) fn encode_update(
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
        pv: &Pv,
        sample: &Result<super::super::source::Sample, ReadFail>,
        sub: &mut Sub,
        subid: u32,
        first: bool,
    ) -> bool {
        scratch.clear();
        sub.pending = false;
        let Ok(e) = pv.encode(sample, sub.dtype, sub.count, scratch) else {
            return false;
        };
        if !first {
            let moved = |deadband: f64| match (e.number, sub.last_number) {
                (Some(n), Some(l)) if deadband >= 0.0 => (n - l).abs() > deadband,
                _ => true,
            };
            let value = sub.mask & DBE_VALUE != 0 && moved(pv.deadbands.mdel());
            let log = sub.mask & DBE_LOG != 0 && moved(pv.deadbands.adel());
            let alarm = sub.mask & DBE_ALARM != 0 && e.alarm != sub.last_alarm;
            if !(value || log || alarm) {
                return false;
            }
        }
        sub.last_number = e.number;
        sub.last_alarm = e.alarm;
        proto::push_message(
            out,
            Header::new(
                cmd::EVENT_ADD,
                0,
                sub.dtype.code(),
                e.count,
                Status::NORMAL.0,
                subid,
            ),
            scratch,
        );
        true
    }

    /// Sends the subscriptions marked pending their current value, while there is room.
    pub(super) fn flush_pending(&mut self, c: &mut Circuit) {
        if !c.events_on {
            return;
        }
        let mut left = false;
        for ch in c.channels.values_mut() {
            for (subid, sub) in ch.subs.iter_mut() {
                if !sub.pending {
                    continue;
                }
                if c.out.len() >= OUT_SOFT {
                    left = true;
                    continue;
                }
                let sample = self.source.read(ch.pv.binding());
                if Self::encode_update(
                    &mut self.scratch,
                    &mut c.out,
                    &ch.pv,
                    &sample,
                    sub,
                    *subid,
                    false,
                ) {
                    self.counters.updates.add(1);
                }
            }
        }
        c.pending = left;
    }

    pub(super) fn unwatch(&mut self, id: usize, sid: u32, subid: u32, watch: WatchId) {
        self.counters.monitors.add(-1);
        if let Some(v) = self.watchers.get_mut(&watch) {
            v.retain(|e| *e != (id, sid, subid));
            if v.is_empty() {
                self.watchers.remove(&watch);
            }
        }
        self.source.unwatch(watch);
    }

    pub(super) fn drop_channel(&mut self, id: usize, c: &mut Circuit, sid: u32) {
        if let Some(ch) = c.channels.remove(&sid) {
            self.counters.channels.add(-1);
            for (subid, sub) in ch.subs {
                c.nsubs -= 1;
                self.unwatch(id, sid, subid, sub.watch);
            }
        }
    }
}
