//! Partials: what interrupted uploads received, kept per path (with the
//! hash state of those bytes) so that a later `PUT` continues them; their
//! expiry, and the sweep that removes expired ones (and the temporary
//! files of dead servers sharing the root) a bounded number per call.

use super::*;

impl Storage {
    /// Continues (or starts) a pass over every user's partials, looking at
    /// up to `budget` of them; returns how many expired ones it removed.
    pub(super) fn sweep_partials(&self, mut budget: usize) -> usize {
        let mut sweep = self.sweep.borrow_mut();
        if !sweep.running {
            sweep.running = true;
            sweep.users = self.users.names().unwrap_or_default();
            sweep.current = None;
            sweep.earliest = None;
            self.sweep_instances();
            self.refresh_ttl();
        }
        let mut expired = 0;
        while budget > 0 {
            budget -= 1;
            if let Some((user, partials, sums, names)) = &mut sweep.current {
                let Some(name) = names.pop() else {
                    sweep.current = None;
                    continue;
                };
                let Ok(meta) = partials.stat(&name) else {
                    continue;
                };
                if !meta.file_type().is_file() {
                    continue;
                }
                if !self.is_expired(&meta) {
                    let expires = Instant::now() + self.expires_in(&meta);
                    sweep.earliest = Some(sweep.earliest.map_or(expires, |e| e.min(expires)));
                    continue;
                }
                if self.remove_expired(partials, &name, &meta) {
                    if let Some(sums) = sums {
                        record::remove(sums, &name);
                    }
                    if let Some(tally) = self.tallies.borrow().get(user.as_str()) {
                        tally.change(|c| c.partial = c.partial.saturating_sub(meta.len()));
                    }
                    expired += 1;
                }
                continue;
            }
            let Some(user) = sweep.users.pop() else {
                sweep.running = false;
                let soonest = Instant::now() + SWEEP_INTERVAL_MIN;
                sweep.next = sweep.earliest.map(|at| at.max(soonest));
                return expired;
            };
            let Some(records) = user.to_str().and_then(|u| self.users.open_dir(u).ok()) else {
                continue;
            };
            let Ok(partials) = records.open_dir(PARTIAL_DIR) else {
                continue;
            };
            let names = partials.names().unwrap_or_default();
            let sums = records.open_dir(PARTIAL_SUMS_DIR).ok();
            let user = user.to_string_lossy().into_owned();
            sweep.current = Some((user, partials, sums, names));
        }
        // Budget spent: go on at the next turn.
        sweep.next = Some(Instant::now());
        expired
    }

    /// Removes the partial `name` if it is still the expired file `meta`
    /// describes. Another server may have continued it, or put a newer
    /// partial in its place, since it was looked at: so it is first moved
    /// out of the way (never over anything), checked, and put back if it
    /// is not the one.
    pub(super) fn remove_expired(&self, partials: &Dir, name: &OsStr, meta: &Metadata) -> bool {
        let tmp = self.tmp();
        let tmp_name = self.tmp_name("expired");
        if partials.rename_noreplace(name, &tmp, &tmp_name).is_err() {
            return false;
        }
        let same = tmp
            .stat(&tmp_name)
            .is_ok_and(|now| (now.dev(), now.ino()) == (meta.dev(), meta.ino()));
        if same {
            self.free_tmp_file(&tmp_name, meta.len());
            return true;
        }
        if let Err(err) = tmp.rename_noreplace(&tmp_name, partials, name) {
            // A newer one took the name meanwhile: that one is kept.
            log::debug!("partial {}: {err}", name.to_string_lossy());
            record::remove(&tmp, &tmp_name);
        }
        false
    }

    /// Removes the temporary files of servers on this root that died
    /// since (unless another server is sweeping right now).
    pub(super) fn sweep_instances(&self) {
        match instance::sweep(&self.private, &self.instances, &self.tmp()) {
            Ok(swept) => {
                if swept.instances > 0 || swept.files > 0 {
                    log::info!(
                        "removed {} temporary upload file(s) of {} stopped server(s)",
                        swept.files,
                        swept.instances
                    );
                }
                for folder in swept.folders {
                    self.queue_trash(folder, None);
                }
            }
            Err(err) => log::warn!("cannot sweep stopped servers' files: {err}"),
        }
    }

    /// How long until the partial `meta` describes expires (zero if it
    /// has).
    pub(super) fn expires_in(&self, meta: &Metadata) -> Duration {
        let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        self.partial_ttl().saturating_sub(self.clock.age(written))
    }

    /// A partial was kept now: the next pass comes no later than its
    /// expiry.
    pub(super) fn partial_kept(&self) {
        let mut sweep = self.sweep.borrow_mut();
        let expires = Instant::now() + self.partial_ttl().max(SWEEP_INTERVAL_MIN);
        sweep.next = Some(sweep.next.map_or(expires, |next| next.min(expires)));
    }

    /// The one expiry rule of the farm (see `clock.rs`).
    pub(super) fn is_expired(&self, meta: &Metadata) -> bool {
        let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        self.clock.age(written) > self.partial_ttl()
    }

    /// How many bytes of an interrupted upload of `name` are held (0 when
    /// there is none, or it expired).
    pub fn partial_len(&self, dir: &UserDir, name: FilePath<'_>) -> Result<u64, StorageError> {
        Ok(self.partial(dir, name)?.map_or(0, |meta| meta.len()))
    }

    /// The metadata of the live partial of `name`; an expired one is
    /// removed and reported as none.
    pub(super) fn partial(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
    ) -> Result<Option<Metadata>, StorageError> {
        let key = format!("{PARTIAL_DIR}/{}", partial_key(name));
        let meta = match self.records_root(dir)?.stat(key) {
            Ok(meta) => meta,
            Err(StorageError::NotFound) => return Ok(None),
            Err(err) => return Err(err),
        };
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        if self.is_expired(&meta) {
            self.discard_partial(dir, name);
            return Ok(None);
        }
        Ok(Some(meta))
    }

    pub(super) fn discard_partial(&self, dir: &UserDir, name: FilePath<'_>) {
        let name = partial_key(name);
        let name = name.as_str();
        let Ok(records) = self.records_root(dir) else {
            return;
        };
        // Usually there is neither: one `openat2` each tells (see
        // `Storage::records_root`), and only what exists is removed.
        if let Ok(meta) = records.stat(format!("{PARTIAL_DIR}/{name}"))
            && meta.is_file()
            && let Ok(partial) = records.open_dir(PARTIAL_DIR)
        {
            self.retire(&partial, name, meta.len());
            record::remove(&partial, name);
            dir.inner
                .tally
                .change(|c| c.partial = c.partial.saturating_sub(meta.len()));
        }
        if records.stat(format!("{PARTIAL_SUMS_DIR}/{name}")).is_ok()
            && let Ok(sums) = records.open_dir(PARTIAL_SUMS_DIR)
        {
            record::remove(&sums, name);
        }
    }

    /// Keeps what an interrupted upload received, so that a later upload of
    /// the same name can continue it (`REST` + `PUT`), together with the
    /// hash state of those bytes when the caller has it. Not synced: no
    /// client was told these bytes are safe. An empty upload is discarded.
    pub fn keep_partial(&self, upload: Upload, hasher: Option<&Hasher>) {
        let len = upload.len();
        if len == 0 {
            return;
        }
        let partial = match self.records(upload.target().0, PARTIAL_DIR) {
            Ok(partial) => partial,
            Err(err) => {
                log::warn!("cannot keep an interrupted upload: {err}");
                return;
            }
        };
        let (file, dir, name, older) = match upload.into_partial(&partial) {
            Ok(kept) => kept,
            Err(err) => {
                log::warn!("cannot keep an interrupted upload: {err}");
                return;
            }
        };
        dir.inner
            .tally
            .change(|c| c.partial = (c.partial + len).saturating_sub(older));
        self.partial_kept();
        let sums = match self.records(&dir, PARTIAL_SUMS_DIR) {
            Ok(sums) => sums,
            Err(err) => {
                // Without it a resume hashes the held bytes again.
                log::warn!("no saved hash state for the partial {name:?}: {err}");
                return;
            }
        };
        let saved = match (hasher, record::settled(file, &partial, &name)) {
            (Some(hasher), Ok(identity)) if hasher.len() == len => {
                let state = hex::encode(hasher.save());
                record::write(&sums, &name, &identity, STATE_KEY, &state)
            }
            _ => Err(io::Error::other("no hash state for these bytes")),
        };
        if let Err(err) = saved {
            // Without it a resume hashes the held bytes again.
            log::debug!("no saved hash state for the partial {name:?}: {err}");
            record::remove(&sums, &name);
        }
    }
}
