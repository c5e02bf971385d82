"""The promotion log: every value an env's model pointer has held, append-only, in S3.

    s3://{bucket}/{project}/promotions/{env}/{seq:012d}.json     (seq = 1, 2, 3, ...)

Each entry is a :class:`~mlops_core.pointer.ModelPointer` with its ``seq`` and ``back``
set. Every pointer change (promote, rollback, the controller's MovePointer) creates entry
``head + 1`` with a conditional put (``IfNoneMatch="*"``): of concurrent writers exactly
one creates it, the others get :class:`~mlops_core.errors.Conflict` naming the winner and
write nothing. So the log is the writers' serialisation point and the record that reaches
further back than SSM's 100 parameter versions.

``back`` makes rollback a stack with O(1) reads at any depth: a promotion's ``back`` is the
head it replaced; a rollback to entry T writes T's value with ``back = T.back``. Promote
v1, v2, v3; rollback -> v2; rollback -> v1; then there is nothing to return to.

Entries are stored sealed (:func:`~mlops_core.signing.seal`), for their own S3 key (a
genuine entry copied to another seq, env or project does not verify there), with the
promotion-signing key, which the controller and the people who promote may use and the
publisher and the other writers of the bucket may not: an entry a bucket writer forges
(to make a rollback return to an old, signed but vulnerable version, or to rewrite who
promoted what) is an integrity failure, not history.

The SSM parameter stays what readers (serving, the controller's observer) read: a copy of
the log's head, put after each log write. A writer that stops between the two leaves SSM
one entry behind; the next writer finds the head by probing forward from SSM's ``seq``
and repairs SSM before it writes (:meth:`PromotionLog.head`).
"""

from __future__ import annotations

import contextlib

from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlops_core import aws, signing
from mlops_core.errors import Conflict, IntegrityError, InvalidInput
from mlops_core.naming import Platform
from mlops_core.pointer import ModelPointer, PointerStore

_LOST = aws.CONDITION_LOST
_MISSING = ("NoSuchKey", "404", "NotFound")
ENTRY_TYPE = "mlops.platform.io/promotion-log-entry/v1"


def pushed(head: ModelPointer | None, value: ModelPointer) -> ModelPointer:
    """``value`` as the entry after ``head`` that a rollback undoes, back to ``head``."""
    if head is None:
        return value.model_copy(update={"seq": 1, "back": None})
    return value.model_copy(update={"seq": _seq(head) + 1, "back": head.seq})


def popped(head: ModelPointer, target: ModelPointer, **update: object) -> ModelPointer:
    """The entry after ``head`` that returns to ``target``: a copy of ``target`` (every
    field, its pins included, travels) with ``update`` applied, whose own rollback
    continues down ``target``'s stack."""
    return target.model_copy(
        update={**update, "action": "rollback", "seq": _seq(head) + 1, "back": target.back}
    )


def _seq(entry: ModelPointer) -> int:
    if entry.seq is None:
        raise InvalidInput("a pointer value outside the promotion log has no position in it")
    return entry.seq


class PromotionLog:
    """Reads and appends one platform's promotion logs; keeps the SSM copies current."""

    def __init__(self, platform: Platform, store: PointerStore | None = None):
        self.platform = platform
        self.store = store or PointerStore(self.platform)
        self.key = self.platform.promotion_signing_key
        #: Entries below a head, read by :meth:`live_before`: written once, never
        #: rewritten, so each is read at most once per instance (None: a gap).
        self._below_head: dict[tuple[str, str, int], ModelPointer | None] = {}
        #: GETs of entries (for the controller's read counters).
        self.entry_reads = 0

    @property
    def _s3(self):
        return aws.client("s3")

    def _key_errors(self) -> contextlib.AbstractContextManager[None]:
        return signing.promotion_key_errors(self.key, "promotion log entries")

    def _uri(self, project: str, env: str, seq: int) -> str:
        key = self.platform.promotion_key(project, env, seq)
        return f"s3://{self.platform.artifact_bucket}/{key}"

    # -- reading -----------------------------------------------------------------------
    def entry(self, project: str, env: str, seq: int) -> ModelPointer | None:
        """Entry ``seq``, or None if the log has none there (yet). IntegrityError for one
        that is not genuine, saying what it blocks and how it is cleared."""
        self.entry_reads += 1
        try:
            return self._entry(project, env, seq)
        except IntegrityError as exc:
            if exc.where != self._uri(project, env, seq):
                raise
            raise IntegrityError(
                exc.what,
                where=exc.where,
                hint=f"{exc.hint}; promote, rollback and the controller stay refused on "
                f"{project}/{env} until an administrator deletes it (the bucket's object "
                "versions keep it as evidence)",
            ) from None

    def _entry(self, project: str, env: str, seq: int) -> ModelPointer | None:
        key = self.platform.promotion_key(project, env, seq)
        where = self._uri(project, env, seq)
        try:
            obj = self._s3.get_object(Bucket=self.platform.artifact_bucket, Key=key)
        except ClientError as exc:
            if aws.error_code(exc) in _MISSING:
                return None
            raise
        raw = signing.read_sealed(obj, where)
        with self._key_errors():
            document = signing.unseal(self.key, ENTRY_TYPE, raw, where, subject=key)
        try:
            found = ModelPointer.model_validate(document)
        except ValidationError as exc:
            raise IntegrityError(
                f"not a valid promotion log entry: {exc.errors()[0]['msg']}",
                where=self._uri(project, env, seq),
                hint="log entries are written only by mlopsctl and the controller; "
                "find out who wrote this object",
            ) from None
        if found.seq != seq:
            raise IntegrityError(
                f"the entry says it is number {found.seq}",
                where=self._uri(project, env, seq),
                hint="log entries are never copied or moved; find out who wrote this object",
            )
        return found

    def _forward(self, project: str, env: str, start: ModelPointer) -> ModelPointer:
        """The newest entry from ``start`` on: GET start+1, start+2, ... until one is
        missing (one GET when ``start`` is the head)."""
        newest = start
        while (after := self.entry(project, env, _seq(newest) + 1)) is not None:
            newest = after
        return newest

    def _listed_head(self, project: str, env: str) -> ModelPointer | None:
        """The head found by listing the log's prefix (when SSM cannot say where it is)."""
        last = None
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.platform.artifact_bucket,
            Prefix=self.platform.promotions_prefix(project, env),
        )
        for page in pages:
            for obj in page.get("Contents", []):
                last = obj["Key"]
        if last is None:
            return None
        stem = last.rpartition("/")[2].removesuffix(".json")
        if not stem.isdigit():
            raise IntegrityError(
                "the promotion log holds an object that is not an entry",
                where=f"s3://{self.platform.artifact_bucket}/{last}",
                hint="only NNNNNNNNNNNN.json entries belong under this prefix; remove it",
            )
        found = self.entry(project, env, int(stem))
        return None if found is None else self._forward(project, env, found)

    def _cached(self, project: str, env: str) -> ModelPointer | None:
        try:
            return self.store.get(project, env)
        except InvalidInput:
            return None  # an unreadable SSM copy: the log says what it should hold

    def latest(self, project: str, env: str) -> ModelPointer | None:
        """The log's head, or None if the log is empty. Reads only."""
        cached = self._cached(project, env)
        if cached is None or cached.seq is None:
            return self._listed_head(project, env)
        at = self.entry(project, env, cached.seq)
        if at is not None:
            return self._forward(project, env, at)
        listed = self._listed_head(project, env)
        if listed is None or _seq(listed) < cached.seq:
            # Writers put SSM only after the entry it copies exists, and never delete an
            # entry: the newest ones were deleted. Repairing SSM to what is left would
            # move the pointer back and rewrite the history a rollback follows.
            param = self.platform.pointer_param(project, env)
            raise IntegrityError(
                f"the model pointer {param} holds entry {cached.seq} of the promotion log, "
                f"but the log ends at {'no entry' if listed is None else listed.seq}: "
                "entries were deleted",
                where=self._uri(project, env, cached.seq),
                hint="restore the deleted entries from the bucket's object versions (an "
                "administrator) and find out who deleted them; if instead the parameter was "
                "written by hand, delete it and the next promote or rollback puts the log's "
                "head back",
            )
        return listed

    def head(self, project: str, env: str) -> ModelPointer | None:
        """The log's head, for a writer about to append after it. Repairs SSM when it
        does not hold the head (a writer stopped between the log and SSM, or SSM was
        written by hand), and adopts a pointer set before the log existed as entry 1."""
        cached = self._cached(project, env)
        head = self.latest(project, env)
        if head is None and cached is not None:
            # The log starts with the value SSM holds; its older history stays in SSM.
            try:
                return self.write(project, env, pushed(None, cached))
            except Conflict:
                head = self.latest(project, env)  # another writer adopted it first
        if head is not None and head != cached:
            self._publish(project, env, head)
        return head

    def live_before(self, project: str, env: str, version: str, below: int) -> int | None:
        """The newest entry under ``below`` (the head's seq) at which ``version`` was live
        in ``env``, or None: the gates' test for a rollback (:func:`mlops_core.gates.check`).

        Reads entries ``below - 1`` down to 1 until one names ``version``; each entry is
        read once per instance (they never change), so a controller asking again each pass
        reads nothing new. An entry that fails its signature is not trusted: it counts as
        never live there (the stricter verdict)."""
        for seq in range(below - 1, 0, -1):
            key = (project, env, seq)
            if key not in self._below_head:
                try:
                    self._below_head[key] = self.entry(project, env, seq)
                except IntegrityError:
                    self._below_head[key] = None
            found = self._below_head[key]
            if found is not None and found.version == version:
                return seq
        return None

    def history(self, project: str, env: str, limit: int | None = None) -> list[ModelPointer]:
        """The log's entries, newest first (``limit`` of them, or all). Reads only."""
        head = self.latest(project, env)
        out: list[ModelPointer] = []
        seq = head.seq if head is not None and head.seq is not None else 0
        while seq >= 1 and (limit is None or len(out) < limit):
            found = self.entry(project, env, seq)
            if found is not None:  # a gap: an entry deleted by hand
                out.append(found)
            seq -= 1
        return out

    def missing(self, entries: list[ModelPointer], limit: int | None = None) -> list[int]:
        """The entry numbers that :meth:`history` (which returned ``entries`` for
        ``limit``) found missing below the head: entries deleted by hand."""
        if not entries:
            return []
        seqs = {_seq(e) for e in entries}
        low = 1 if limit is None or len(entries) < limit else min(seqs)
        return [s for s in range(max(seqs), low - 1, -1) if s not in seqs]

    # -- writing -----------------------------------------------------------------------
    def create(self, project: str, env: str, entry: ModelPointer) -> None:
        """Create log entry ``entry.seq``, or raise Conflict naming the writer who created
        it first. Writes the log only: :meth:`write` also updates SSM."""
        seq = _seq(entry)
        key = self.platform.promotion_key(project, env, seq)
        with self._key_errors():
            body = signing.seal(self.key, ENTRY_TYPE, entry.model_dump(mode="json"), key)
        try:
            self._s3.put_object(
                Bucket=self.platform.artifact_bucket,
                Key=key,
                # Sealed for its place: a genuine entry copied to another seq, env or
                # project does not verify there.
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if aws.error_code(exc) not in _LOST:
                raise
            winner = self.entry(project, env, seq)
            if winner is None:  # S3's 409: the winner's write has not landed yet
                who = "another writer is writing it now"
            else:
                who = (
                    f"{winner.action} of {winner.version} by {winner.promoted_by} "
                    f"at {winner.promoted_at:%Y-%m-%dT%H:%M:%SZ}"
                )
            raise Conflict(
                f"{project}/{env} changed while this {entry.action} of {entry.version} was "
                f"being written: entry {seq} is {who}",
                where=self._uri(project, env, seq),
                hint=f"nothing was written; see 'mlopsctl history --env {env} --project "
                f"{project}' and retry if the change is still wanted",
            ) from None

    def write(self, project: str, env: str, entry: ModelPointer) -> ModelPointer:
        """Append ``entry`` (made by :func:`pushed` or :func:`popped` from the head) and
        make SSM hold the log's head. Returns ``entry``."""
        self.create(project, env, entry)
        self._publish(project, env, entry)
        return entry

    def _publish(self, project: str, env: str, entry: ModelPointer) -> None:
        """Put ``entry`` in SSM, then look once more: a writer that appended after it may
        have put SSM before this put did, so put the real head until none is newer."""
        while True:
            self.store.put(project, env, entry)
            newest = self._forward(project, env, entry)
            if newest.seq == entry.seq:
                return
            entry = newest
