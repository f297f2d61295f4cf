"""The rules document shared: one YAML text and its version, the same on every process.

Redis holds `PREFIX:rules:doc` (a hash: `text`, `digest` (its sha256), `version`, `from`) and
`PREFIX:rules:history` (the digests of the last versions, scored by version). Every change is one Lua
script: a compare-and-set on the digest the change was planned on, which bumps the version and
announces it on the change channel. A change that lost the race is planned again on the new text
(rules.fileio.retry_stale), so two edits at once through two processes both survive.

`SharedRules` is the rules' `DocumentHome` while the process is in the group: the commands read the
shared text, and write it back through the compare-and-set; the process then writes its own file
too when it can (surgically, as the commands always do), and says once when it cannot (a read-only
ConfigMap, say). A hand edit of the file (the watcher) goes to the group the same way. Every
process takes a new version when it hears of it, or within a poll (a missed message).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from mockllm_tui.core.store import Store
from mockllm_tui.rules import fileio
from mockllm_tui.rules.fileio import (
    STALE_ATTEMPTS,
    ChangedMeanwhile,
    DocumentHome,
    StaleDocument,
    WriteError,
    current_file,
    digest_of,
    is_packaged_example,
    parse_bytes,
    read_bytes,
    serve_text,
    shown_path,
    write_file,
)
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import FileSource, RulesFileError
from mockllm_tui.shared.connection import RedisState, shown_url

log = logging.getLogger(__name__)

#: How often the shared version is looked at (a change message can be missed while reconnecting).
POLL_INTERVAL_S = 0.5
HISTORY = 256

#: KEYS: the document, the history, the channel. ARGV: mode (seed: only when there is none; cas:
#: when the document is still `expected`; hand: as cas, but a text the group had before is `past`),
#: expected digest, text, digest, instance, lowest version. Returns {status, version}.
SWAP = """
local doc, history, channel = KEYS[1], KEYS[2], KEYS[3]
local mode, expected, text, digest, instance = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('HGET', doc, 'digest')
local version = tonumber(redis.call('HGET', doc, 'version') or '0')
if current then
  if current == digest then return {'same', version} end
  if mode == 'seed' then return {'stale', version} end
  if current ~= expected then
    if mode == 'hand' and redis.call('ZSCORE', history, digest) then return {'past', version} end
    return {'stale', version}
  end
end
version = math.max(version + 1, tonumber(ARGV[6]))
redis.call('HSET', doc, 'text', text, 'digest', digest, 'version', version, 'from', instance)
redis.call('ZADD', history, version, digest)
redis.call('ZREMRANGEBYRANK', history, 0, -HISTORY)
redis.call('PUBLISH', channel, cjson.encode({kind = 'rules', from = instance, version = version}))
return {'written', version}
""".replace("HISTORY", str(HISTORY + 1))


def text_of(value: bytes | str) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


class SharedRules(DocumentHome):
    """The rules document kept in Redis for the whole group (and in each process's file)."""

    kinds: tuple[str, ...] = ("rules",)

    def __init__(self, state: RedisState) -> None:
        self.state = state
        #: The shared document this process knows last: its digest ("" none) and version.
        self.digest = ""
        self.shared_version = 0
        #: Changes written from here; a read begun before one may be older than what this process knows.
        self._writes = 0
        self._told_unwritable: set[Path] = set()
        #: A hand edit made while Redis was unreachable, to bring to the group when it is back.
        self._pending_edit = False
        self._swap_sync = state.sync_client.register_script(SWAP)
        self._swap_async = state.client.register_script(SWAP)

    @property
    def _store(self) -> Store:
        store = self.state.store
        assert store is not None, "joined before the state started"
        return store

    def _keys(self) -> list[str]:
        key = self.state.key
        return [key("rules", "doc"), key("rules", "history"), self.state.channel]

    def _args(self, mode: str, expected: str, text: str, digest: str) -> list[Any]:
        return [mode, expected, text, digest, self.state.sender, self.shared_version + 1]

    def _record(self, digest: str, version: int) -> None:
        self.digest, self.shared_version = digest, version

    def _swap(self, mode: str, expected: str, text: str, digest: str) -> tuple[str, int]:
        """Run the compare-and-set now (blocking: a rare write from synchronous code)."""
        status, version = self._swap_sync(keys=self._keys(), args=self._args(mode, expected, text, digest))
        return text_of(status), int(version)

    def _unreachable(self, exc: Exception | None = None) -> WriteError:
        why = f" ({exc})" if exc is not None else ""
        return WriteError(errno.EIO, f"the shared state at {shown_url(self.state.url)} is unreachable{why}")

    def _served(self) -> FileSource | None:
        store = self._store
        rules = store.rules if store.has_rules else None
        return rules.source if isinstance(rules, RuleSet) else None

    # -- DocumentHome: what the rule commands and the watcher see ---------------------------------

    def read(self, store: Store, path: Path) -> bytes:
        """The shared text (a change is planned on it); this process's rules when there is none."""
        if self.state.degraded:
            raise self._unreachable()
        try:
            self._bring_unread_edit(path)
            text = self.state.sync_client.hget(self._keys()[0], "text")
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None
        if text is not None:
            return text if isinstance(text, bytes) else text.encode("utf-8")
        served = self._served()
        return served.text.encode("utf-8") if served is not None else read_bytes(path)

    def _bring_unread_edit(self, path: Path) -> None:
        """A hand edit of the file the watcher has not read yet goes to the group before a change
        is planned on the shared text, so the change is made on top of it (as with the file alone)."""
        if is_packaged_example(path):
            return
        try:
            source = parse_bytes(read_bytes(path), path)[1]
        except RulesFileError:
            return
        served = self._served()
        if source.digest in (self.digest, served.digest if served is not None else None) or not path.exists():
            return
        if not self._known(source.digest):
            with contextlib.suppress(StaleDocument):
                self._bring_edit(source)

    def write(self, store: Store, base: FileSource, text: str) -> FileSource:
        """Compare-and-set the shared text (StaleDocument: it changed since `base` was read), then
        write this process's file too when it can."""
        digest = digest_of(text.encode("utf-8"))
        try:
            status, version = self._swap("cas", base.digest, text, digest)
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None
        if status == "stale":
            raise StaleDocument()
        self._record(digest, version)
        self._writes += 1
        return self._write_file(FileSource(base.path, text, digest))

    def adopt(self, store: Store, source: FileSource) -> FileSource | None:
        """A valid hand edit of this process's file: the group's rules from now on (compare-and-set
        on the version this process served; an edit made at the same moment elsewhere is replaced,
        said in one line). A copy of a version the group had before (another process sharing the
        file wrote it late) is not an edit: the current shared text is served (and written) instead."""
        if source.digest == self.digest:
            return source
        if self.state.degraded:
            self._pending_edit = True
            return source
        try:
            return self._bring_edit(source)
        except (RedisError, OSError, StaleDocument):
            self._pending_edit = True
            return source

    def version(self, source: FileSource) -> str:
        """The shared version (a number) when `source` is the shared text, else its digest."""
        if source.digest == self.digest and self.shared_version:
            return str(self.shared_version)
        return super().version(source)

    def _bring_edit(self, source: FileSource) -> FileSource | None:
        expected = self.digest
        for _ in range(STALE_ATTEMPTS):
            status, version = self._swap("hand", expected, source.text, source.digest)
            if status in ("written", "same"):
                self._record(source.digest, version)
                self._writes += 1
                return source
            text, digest, version_raw = self.state.sync_client.hmget(self._keys()[0], "text", "digest", "version")
            if status == "past" and text is not None and digest is not None:
                shared = FileSource(source.path, text_of(text), text_of(digest))
                self._record(shared.digest, int(version_raw or 0))
                self._writes += 1
                return self._write_file(shared)
            expected = text_of(digest) if digest is not None else ""
            message = (
                f"{source.name} was edited by hand while the group's rules changed too: "
                "the edited file replaces the shared rules"
            )
            log.warning("%s", message)
            self._store.announce(message)
        raise StaleDocument()

    # -- this process's file ------------------------------------------------------------------------

    def _write_file(self, source: FileSource, *, joining: bool = False) -> FileSource:
        """Write the shared text into this process's file (the source to serve). A file holding
        something the group never had (a hand edit the watcher has yet to bring, except when joining)
        or one with errors is left alone; an unwritable one is said once."""
        store = self._store
        path = current_file(store, source.path)
        source = FileSource(path, source.text, source.digest)
        try:
            raw = read_bytes(path)
        except RulesFileError:
            raw = None
        if raw is not None and digest_of(raw) == source.digest:
            return source
        if raw and self._broken(raw, path):
            return source
        if raw is not None and path.exists() and not joining and not self._known(digest_of(raw)):
            return source
        try:
            return write_file(store, source, source.text, unless_changed=digest_of(raw) if raw is not None else None)
        except ChangedMeanwhile:  # a hand edit landed this moment: the watcher brings it
            return source
        except WriteError as exc:
            if path not in self._told_unwritable:
                self._told_unwritable.add(path)
                message = (
                    f"{exc.strerror}: this process serves the group's shared rules without writing them to "
                    f"{shown_path(path)}"
                )
                log.warning("%s", message)
                store.announce(message)
            return source

    def _known(self, digest: str) -> bool:
        """Whether a file's content is a version the group had (so a newer one may replace it)."""
        served = self._served()
        if digest == self.digest or (served is not None and digest == served.digest and not self._pending_edit):
            return True
        try:
            return self.state.sync_client.zscore(self._keys()[1], digest) is not None
        except (RedisError, OSError):
            return False

    @staticmethod
    def _broken(raw: bytes, path: Path) -> bool:
        try:
            parse_bytes(raw, path)
        except RulesFileError:
            return True
        return False

    @classmethod
    def _has_errors(cls, path: Path) -> bool:
        try:
            return cls._broken(read_bytes(path), path)
        except RulesFileError:
            return True

    def _take(self, text: str, digest: str, version: int, *, joining: bool = False) -> None:
        """Serve the group's text (and write it to this process's file)."""
        store = self._store
        served = self._served()
        path = served.path if served is not None else Path(store.config.responses_path)
        same = served is not None and served.digest == digest
        if not same:
            error = store.file_error
            source = self._write_file(FileSource(path, text, digest), joining=joining)
            try:
                serve_text(store, source)
            except RulesFileError as exc:
                log.warning("the group's shared rules are invalid here (%s): keeping this process's", exc)
                return
            if error is not None and self._has_errors(source.path):
                store.set_file_error(error)
        self._record(digest, version)
        if joining:
            url = shown_url(self.state.url)
            name = shown_path(current_file(store, path))
            if same:
                message = f"joined the group at {url}: its shared rules (version {version}) are the ones in {name}"
            else:
                message = (
                    f"joined the group at {url}: serving its shared rules (version {version}), not the ones in {name}"
                )
            log.warning("%s", message)
            store.announce(message)

    # -- SharedPart: joining, hearing changes, coming back ------------------------------------------

    async def join(self, first: bool) -> None:
        """Take the group's document, or (there is none yet) seed it with this process's rules."""
        fileio.set_home(self._store, self)
        held = await self.state.client.hexists(self._keys()[0], "digest")
        if held or not await self._seed():
            await self.refresh(joining=True)
        self.state.spawn(self._poll())

    async def on_message(self, message: dict[str, Any]) -> None:
        """Another process changed the document: take it."""
        await self.refresh()

    async def resync(self, emptied: bool) -> None:
        """Back in touch: bring a hand edit made meanwhile, seed the document again when Redis lost
        it, else take it."""
        self._bring_pending()
        if not await self._seed():
            await self.refresh()

    def _bring_pending(self) -> None:
        """Bring the hand edit made while Redis was unreachable (before taking anything from it)."""
        if not self._pending_edit:
            return
        served = self._served()
        if served is not None and served.digest != self.digest:
            with contextlib.suppress(StaleDocument):
                self._bring_edit(served)
        self._pending_edit = False

    async def _seed(self) -> bool:
        """Put this process's rules into Redis when it holds no document (False: it holds one, or
        this process has none to give: its file is missing or broken, or it is the packaged example).
        Rules that were the group's are given back after Redis lost them."""
        store = self._store
        served = self._served()
        if served is None:
            return False
        was_shared = bool(self.digest) and served.digest == self.digest
        if not was_shared and (store.file_error is not None or is_packaged_example(served.path)):
            return False
        try:
            parse_bytes(served.text.encode("utf-8"), served.path)
        except RulesFileError:
            return False
        args = self._args("seed", "", served.text, served.digest)
        status, version = await self._swap_async(keys=self._keys(), args=args)
        if text_of(status) == "stale":
            return False
        self._record(served.digest, int(version))
        return True

    async def refresh(self, *, joining: bool = False) -> None:
        """Read the shared document and serve it when it is not what this process serves."""
        self._bring_pending()
        for _ in range(3):
            writes = self._writes
            text, digest, version = await self.state.client.hmget(self._keys()[0], "text", "digest", "version")
            if writes != self._writes:
                continue
            if text is not None and digest is not None:
                self._take(text_of(text), text_of(digest), int(version or 0), joining=joining)
            return

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            if self.state.degraded:
                continue
            try:
                digest, version = await self.state.client.hmget(self._keys()[0], "digest", "version")
                if digest is None:
                    await self._seed()
                elif text_of(digest) != self.digest:
                    await self.refresh()
                else:
                    self.shared_version = int(version or 0)
            except (RedisError, OSError):
                continue
            except Exception:  # keep looking: one bad read must not end the poll
                log.exception("the shared rules could not be taken")
