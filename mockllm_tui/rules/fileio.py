"""Reading, watching and writing the responses file.

- `read_document` validates a file into a Document (errors name the file and the line).
- `reload_from_disk` swaps in the file's rules, or keeps the last good ones and reports the error.
- `watch_rules` reloads on change (watchfiles; the parent folder is watched so editors' atomic
  renames are seen). A file whose content hash equals what the store already serves (our own
  write, say) is not reloaded again.
- `atomic_write` writes through a temporary file in the same folder, fsync and os.replace.
- `open_for_change` / `write_change`: every change to the file goes through these. The packaged
  example is read-only: its first change creates ./responses.yml (the example's text plus the
  change), which the store serves and the watcher follows from then on.
- `DocumentHome`: where the document lives. By default the file alone; the shared state puts in a
  home that keeps it in Redis as well (`set_home`), so the commands never learn where it lives. A
  change there is a compare-and-set: `StaleDocument` says to read it again and re-plan the change
  (`retry_stale`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import stat
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mockllm_tui.core.models import ModelRegistry
from mockllm_tui.core.store import Store
from mockllm_tui.rules.document import Document
from mockllm_tui.rules.matcher import RuleSet
from mockllm_tui.rules.model import Entry, FileSource, RuleError, RulesFileError, RulesModel
from mockllm_tui.rules.validate import media_file_errors

log = logging.getLogger("mockllm_tui.rules")

T = TypeVar("T")

WATCH_DEBOUNCE_MS = 50
WATCH_STEP_MS = 20
#: The link a Kubernetes ConfigMap volume renames to swap in new contents of all its files.
CONFIGMAP_LINK = "..data"
#: How many times a change is planned again when the shared document changed under it.
STALE_ATTEMPTS = 20
#: The example shipped in the package: served when there is no ./responses.yml, never written.
PACKAGED_EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "responses.yml"
#: The file a change to the packaged example creates, in the folder the program runs in.
LOCAL_NAME = "responses.yml"


def digest_of(data: bytes) -> str:
    """The content hash used to tell our own writes and unchanged files apart."""
    return hashlib.sha256(data).hexdigest()


def located(exc: RulesFileError, filename: str) -> RulesFileError:
    """The same errors, naming the file."""
    return RulesFileError([e.located(filename) for e in exc.errors])


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing file reads as empty. Raises RulesFileError when unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise RulesFileError([RuleError(f"cannot read the file: {exc.strerror}", filename=path.name)]) from None


def parse_bytes(raw: bytes, path: Path) -> tuple[Document, FileSource]:
    """Validate file content into a Document and its source."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesFileError([RuleError(f"not UTF-8 text ({exc.reason})", filename=path.name)]) from None
    try:
        doc = Document(text)
    except RulesFileError as exc:
        raise located(exc, path.name) from None
    return doc, FileSource(path, text, digest_of(raw))


def read_document(path: Path) -> tuple[Document, FileSource]:
    """Read and validate a responses file. Raises RulesFileError (every message names file and line)."""
    return parse_bytes(read_bytes(path), path)


def identity(entry: Entry) -> tuple[Any, ...]:
    """What makes an entry "the same rule" across reloads: its key, its name, or the rule itself."""
    if entry.key is not None:
        return ("short", entry.key.strip().lower())
    if entry.spec.name:
        return ("named", entry.spec.name)
    return ("rule", entry.spec)


def assign_ids(model: RulesModel, previous: Any = None, pinned: dict[int, Entry] | None = None) -> list[int]:
    """Ids for the model's entries: kept from `previous` for the same rule (see `identity`), and from
    `pinned` (id -> entry) first; new rules get new ids."""
    entries = model.entries
    old = previous.rules if isinstance(previous, RuleSet) else []
    ids: list[int | None] = [None] * len(entries)
    taken: set[int] = set()
    for rule_id, entry in (pinned or {}).items():
        for i, e in enumerate(entries):
            if ids[i] is None and e == entry:
                ids[i] = rule_id
                taken.add(rule_id)
                break
    pool: dict[tuple[Any, ...], list[int]] = {}
    for rule in old:
        if rule.id not in taken:
            pool.setdefault(identity(rule.entry), []).append(rule.id)
    for i, entry in enumerate(entries):
        if ids[i] is None:
            candidates = pool.get(identity(entry))
            if candidates:
                ids[i] = candidates.pop(0)
                taken.add(ids[i] or 0)
    next_id = max([*taken, *(r.id for r in old)], default=0) + 1
    out = []
    for maybe in ids:
        if maybe is None:
            maybe, next_id = next_id, next_id + 1
        out.append(maybe)
    return out


def apply_ruleset(store: Store, ruleset: RuleSet) -> None:
    """Make a rule set live: the rules, the file's `settings:` knob layer and its `models:`."""
    previous = store.rules if store.has_rules else None
    before = previous.model if isinstance(previous, RuleSet) else None
    store.set_rules(ruleset)
    model = ruleset.model
    if model.knob_settings() != store.knob_layer("file"):
        store.set_knobs("file", model.knob_settings(), replace_layer=True)
    if before is None or before.models != model.models:
        store.set_models(models_from(model.models))


def models_from(entries: list[Any] | None) -> ModelRegistry | None:
    """The model registry for a file's `models:` list (None: the defaults)."""
    if entries is None:
        return None
    return ModelRegistry.from_config(entries)


def empty_ruleset(path: Path | None) -> RuleSet:
    """No rules (every prompt gets the unknown response), reading from `path` when given."""
    source = FileSource(path, "", digest_of(b"")) if path is not None else None
    return RuleSet(RulesModel(), [], source=source)


def load_initial(store: Store, path: Path) -> None:
    """Load the file at start-up. A broken file starts with no rules and reports the error."""
    path = Path(path)
    store.configure(responses_path=str(path))
    try:
        raw = read_bytes(path)
        doc, source = parse_bytes(raw, path)
    except RulesFileError as exc:
        ruleset = empty_ruleset(path)
        with contextlib.suppress(OSError):
            raw = path.read_bytes()
            text = raw.decode("utf-8", "replace")
            ruleset = RuleSet(RulesModel(), [], source=FileSource(path, text, digest_of(raw)))
        apply_ruleset(store, ruleset)
        report_error(store, str(exc))
        return
    apply_ruleset(store, RuleSet(doc.model, source=source))
    log_warnings(path, doc.model)
    if not path.exists():
        message = f"{path.name}: file not found; starting with no rules (an edit will create it)"
        log.warning("%s", message)
        store.set_file_error(message)


def log_warnings(path: Path, model: RulesModel) -> None:
    """Log what --check would warn about (a shadowed tool_result rule, say)."""
    for line, message in model.warnings:
        log.warning("%s: %s", f"{path.name}:{line}" if line else path.name, message)


def report_error(store: Store, message: str) -> None:
    """Show the problem (log line and the store's event); the rules served so far keep serving."""
    log.warning("%s (%s)", message, still_serving(store))
    store.set_file_error(message)


def still_serving(store: Store) -> str:
    """What serves while the file is broken, in words: the last good rules, or (none yet) no rules."""
    current = store.rules if store.has_rules else None
    if current is None or (isinstance(current, RuleSet) and len(current) == 0):
        return "no rules are loaded until it is fixed: every prompt gets the fallback reply"
    return "the last good rules keep serving"


def reload_from_disk(store: Store, path: Path | None = None, *, force: bool = False) -> str | None:
    """Reload the file if its content differs from what is served. Returns the error message, if any.

    An invalid file keeps the last good rules serving and reports the error through the store.
    """
    current = store.rules if store.has_rules else None
    source = current.source if isinstance(current, RuleSet) else None
    path = Path(path) if path is not None else source.path if source is not None else Path(store.config.responses_path)
    path = current_file(store, path)
    try:
        raw = read_bytes(path)
        if not force and source is not None and source.digest == digest_of(raw):
            if store.file_error is not None:
                store.set_file_error(None)
            return None
        doc, new_source = parse_bytes(raw, path)
    except RulesFileError as exc:
        report_error(store, str(exc))
        return str(exc)
    adopted = home_of(store).adopt(store, new_source)
    if adopted is None:
        if store.file_error is not None:
            store.set_file_error(None)
        return None
    if adopted.digest != new_source.digest:
        doc, new_source = parse_bytes(adopted.text.encode("utf-8"), adopted.path)
    previous = current if isinstance(current, RuleSet) else None
    apply_ruleset(store, RuleSet(doc.model, assign_ids(doc.model, previous), source=new_source, previous=previous))
    log.info("reloaded %s (%d rules)", path.name, len(doc.model.entries))
    log_warnings(path, doc.model)
    return None


async def watch_rules(store: Store, path: Path) -> None:
    """Reload the file whenever it changes on disk, until cancelled. For the read-only packaged
    example, ./responses.yml is watched too: the first change creates it, and from then on it is
    the file served. A file reached through a link is watched where the link is, so a mounted
    Kubernetes ConfigMap (whose files are links through `..data`, swapped by renaming it on an
    update) is followed too."""
    from watchfiles import awatch

    served = Path(os.path.abspath(path))
    copy = copy_target(served)
    files = {served} if copy is None else {served, Path(os.path.abspath(copy))}
    folders = {file.parent for file in files}

    def only_the_files(_change: object, changed: str) -> bool:
        changed_path = Path(changed)
        return changed_path in files or (changed_path.name == CONFIGMAP_LINK and changed_path.parent in folders)

    target = None if copy is not None else served
    changes = awatch(
        *folders,
        watch_filter=only_the_files,
        debounce=WATCH_DEBOUNCE_MS,
        step=WATCH_STEP_MS,
        recursive=False,
        ignore_permission_denied=True,
    )
    # Watch first, then look once more: a change made after the file was loaded and before the
    # watch began (a `--workers` process starts slowly on a busy machine) is not missed.
    first = asyncio.ensure_future(anext(changes))
    try:
        await asyncio.sleep(0)  # awatch's first step registers the watch
        reload_from_disk(store, target)
        await first
    finally:
        first.cancel()
    reload_from_disk(store, target)
    async for _changes in changes:
        reload_from_disk(store, target)


class WriteError(OSError):
    """The file could not be written (read-only file or folder, disk full)."""


# -- the read-only packaged example ------------------------------------------------------------------


def is_packaged_example(path: Path) -> bool:
    """Whether `path` is the example shipped in the package (which is never written)."""
    return Path(path).resolve() == PACKAGED_EXAMPLE


def copy_target(path: Path) -> Path | None:
    """Where a change to `path` is written when `path` is read-only: for the packaged example,
    ./responses.yml in the current folder. None: `path` itself is written."""
    return Path.cwd() / LOCAL_NAME if is_packaged_example(path) else None


def short_path(path: Path) -> str:
    """The path as the panel shows it: absolute, with the home folder as `~`."""
    path = Path(path).absolute()
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) and path != home else str(path)


def shown_path(path: Path) -> str:
    """A path as messages name it: `./name` in the current folder, else as `short_path`."""
    path = Path(path).absolute()
    return f"./{path.name}" if path.parent == Path.cwd() else short_path(path)


def follow(store: Store, path: Path, message: str) -> None:
    """Serve (and watch) the rules from `path` from now on, saying so in one line (the log and the
    store's notice, which the panel shows)."""
    if store.config.responses_path == str(path):
        return
    store.configure(responses_path=str(path))
    log.warning("%s", message)
    store.announce(message)


def current_file(store: Store, path: Path) -> Path:
    """The file the rules are read from now: `path`, except for the packaged example once its copy
    ./responses.yml exists (made by another process, or by hand): then the copy, served from then on."""
    copy = copy_target(path)
    if copy is None or not copy.exists():
        return path
    follow(store, copy, f"serving {shown_path(copy)}, made since start (the packaged example is read-only)")
    return copy


def open_for_change(store: Store, source: FileSource) -> tuple[Document, FileSource]:
    """The rules document as it is now (the file on disk, or the shared one), which a change is made
    to: its document and source. Raises WriteError when the file on disk has errors."""
    path = current_file(store, source.path)
    try:
        return parse_bytes(home_of(store).read(store, path), path)
    except RulesFileError as exc:
        raise WriteError(0, f"{path.name} has errors on disk ({exc}); fix it first") from None


def write_change(store: Store, source: FileSource, text: str) -> FileSource:
    """Make `text` the rules document in place of `source` (as read by `open_for_change`): written to
    the file, and where the document lives besides. Raises StaleDocument when the shared document
    changed since it was read (see `retry_stale`), WriteError when it cannot be written."""
    return home_of(store).write(store, source, text)


def retry_stale(change: Callable[[], T]) -> T:
    """Run `change` (read the document, plan the change on it, write it) again while the shared
    document changed between its read and its write."""
    for _ in range(STALE_ATTEMPTS):
        try:
            return change()
        except StaleDocument:
            continue
    raise WriteError(errno.EAGAIN, "the shared rules kept changing while this change was written")


class StaleDocument(Exception):
    """The shared document changed since it was read: read it again and plan the change anew."""


class DocumentHome:
    """Where the rules document lives: this one, the file alone (one process owns it). The shared
    state's home (mockllm_tui/shared/rules_doc.py) keeps it in Redis too."""

    def read(self, store: Store, path: Path) -> bytes:
        """The document as it is now, which a change is made to (`path`: the file served)."""
        return read_bytes(path)

    def write(self, store: Store, base: FileSource, text: str) -> FileSource:
        """Make `text` the document in place of `base` (as `read` gave it); the source served next."""
        return write_file(store, base, text)

    def adopt(self, store: Store, source: FileSource) -> FileSource | None:
        """A valid file seen changed on disk (a hand edit): the source to serve now (None: nothing
        changes). The file alone: the file is the document."""
        return source

    def version(self, source: FileSource) -> str:
        """The version of the document served (the ETag of GET /_mock/rules/file)."""
        return source.digest or digest_of(source.text.encode("utf-8"))


FILE_HOME = DocumentHome()
_homes: weakref.WeakKeyDictionary[Store, DocumentHome] = weakref.WeakKeyDictionary()


def home_of(store: Store) -> DocumentHome:
    """Where this store's rules document lives (the file, unless the shared state set another)."""
    return _homes.get(store, FILE_HOME)


def set_home(store: Store, home: DocumentHome | None) -> None:
    """Keep this store's rules document in `home` from now on (None: the file alone again)."""
    if home is None:
        _homes.pop(store, None)
    else:
        _homes[store] = home


def serve_text(store: Store, source: FileSource) -> None:
    """Make a document's text (the shared one) live, as a reload of the file would: same rules keep
    their ids and hits. Raises RulesFileError when it is invalid (nothing changes then)."""
    doc, parsed = parse_bytes(source.text.encode("utf-8"), source.path)
    current = store.rules if store.has_rules else None
    previous = current if isinstance(current, RuleSet) else None
    new_source = FileSource(source.path, parsed.text, source.digest or parsed.digest)
    apply_ruleset(store, RuleSet(doc.model, assign_ids(doc.model, previous), source=new_source, previous=previous))


def write_file(store: Store, source: FileSource, text: str, *, unless_changed: str | None = None) -> FileSource:
    """Write a changed file (atomically) in place of `source`'s. The packaged example is read-only:
    its change creates ./responses.yml, which the store serves from then on (said in one line).
    `unless_changed`: see `atomic_write`."""
    copy = copy_target(source.path)
    if copy is None:
        return FileSource(source.path, text, atomic_write(source.path, text, unless_changed=unless_changed))
    if is_packaged_example(copy):
        raise WriteError(errno.EACCES, f"could not write {copy.name}: the packaged example is read-only")
    digest = atomic_write(copy, text, unless_changed=unless_changed)
    follow(store, copy, f"created {shown_path(copy)} from the packaged example (which stays read-only)")
    return FileSource(copy, text, digest)


class ChangedMeanwhile(WriteError):
    """The file changed while it was being written over (a hand edit): it was left as it is."""


def atomic_write(path: Path, text: str, *, unless_changed: str | None = None) -> str:
    """Write `text` to `path` atomically (temporary file in the same folder, fsync, os.replace).

    Keeps the file's permissions. Refuses a read-only file. Returns the content hash. With
    `unless_changed` (a content hash), a file that no longer has that content at the last moment
    is left alone (ChangedMeanwhile).
    """
    target = Path(path).resolve()
    data = text.encode("utf-8")
    mode = 0o644
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
        # no write bit at all is the user saying "read-only", even to root
        if not os.access(target, os.W_OK) or not mode & 0o222:
            raise WriteError(errno.EACCES, f"could not write {target.name}: the file is read-only")
    if not stat.S_IMODE(target.parent.stat().st_mode) & 0o222:
        raise WriteError(errno.EACCES, f"could not write {target.name}: its folder {target.parent} is read-only")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(exc.errno or errno.EACCES, f"could not write {target.name}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if unless_changed is not None and _digest_now(target) != unless_changed:
            os.unlink(tmp)
            raise ChangedMeanwhile(errno.EAGAIN, f"{target.name} changed while it was written; it was left as it is")
        os.replace(tmp, target)
    except ChangedMeanwhile:
        raise
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WriteError(exc.errno or errno.EIO, f"could not write {target.name}: {exc.strerror}") from None
    _fsync_dir(target.parent)
    return digest_of(data)


def _digest_now(path: Path) -> str:
    try:
        return digest_of(read_bytes(path))
    except RulesFileError:
        return ""


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_file(path: Path, out: Any) -> int:
    """`mockllm-tui --check`: print every problem (file:line: ...) and the warnings; 0 when valid."""
    path = Path(path)
    if not path.exists():
        out.write(f"{path}: file not found\n")
        return 1
    try:
        doc, _ = read_document(path)
        missing = media_file_errors(doc.model, path.parent)
        if missing:
            raise located(RulesFileError(missing), path.name)
    except RulesFileError as exc:
        for error in exc.errors:
            out.write(f"{error}\n")
        out.write(f"{path}: {len(exc.errors)} problem{'s' if len(exc.errors) != 1 else ''}\n")
        return 1
    for line, message in doc.model.warnings:
        out.write(f"{path.name}:{line}: warning: {message}\n" if line else f"{path.name}: warning: {message}\n")
    n = len(doc.model.entries)
    out.write(f"{path}: ok ({n} rule{'s' if n != 1 else ''})\n")
    return 0
