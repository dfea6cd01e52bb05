"""`bluesky.queue`: the worker side of the bridge (imported only inside a worker)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import Message, Processor
from asapo_pipelines_bluesky import bridge
from asapo_pipelines_bluesky.inbox import Inbox, InboxError
from asapo_pipelines_bluesky.queue import QueueClient, QueueError, QueueUnreachable


class QueueBridge(Processor):
    """Records each suggestion in the inbox; in auto mode queues it at once within the budget.

    Before each suggestion it follows earlier items through the queue (submitted, running,
    completed, failed) and sends every state change, also those made by people in the inbox
    meanwhile, on `status`.
    """

    def on_start(self) -> None:
        # a relative inbox is relative to the working directory: the worker runs next to the
        # pipeline file, where `pipeline suggestions FILE` looks for it too
        self.inbox = Inbox(Path(self.params.inbox))
        self.client: QueueClient | None = None
        self._sent: list[int] = []
        self.counts: dict[str, int] = {}
        # what summary() shows: counted again at each flush (the worker takes the summary
        # after each commit), so `pipeline status` follows the states while the unit runs
        self.states = self.inbox.state_counts(self.context.instance)
        # an approve that stopped half-way is looked for now, not only when the next suggestion
        # comes (which may be never): in the background, so that a server that is down does not
        # hold the start up by its timeout
        self._stopping = threading.Event()
        self._recovering = threading.Thread(
            target=self._recover_at_start, name="bluesky.queue recover", daemon=True
        )
        self._recovering.start()

    def _recover_at_start(self) -> None:
        """Find this bridge's approves that stopped half-way (`bridge.recover`) with the first
        answer of the queue server: asked again every `timeout` seconds until it answers or
        the unit shuts down. Its own inbox connection and client: SQLite's and 0MQ's are not
        shared between threads; the decision lock keeps it apart from approves under way."""
        try:
            inbox = Inbox(Path(self.params.inbox))
        except InboxError as exc:  # the bridge's own use of the inbox says it again, and fails
            self.log.warning("cannot look for approves that stopped: %s", exc.message)
            return
        try:
            while not self._stopping.is_set():
                if not any(e.state == "approved" for e in inbox.entries(self.context.instance)):
                    return  # nothing stopped half-way: the server is not asked
                try:
                    with QueueClient(self.params) as client:
                        bridge.refresh(inbox, client, self.context.instance)
                    return
                except QueueUnreachable:
                    self._stopping.wait(self.params.timeout)
                except (QueueError, InboxError) as exc:  # a refusal, a bad key file, a damaged
                    # inbox: asking again won't do, and a thread's traceback would say less
                    self.log.warning("cannot look for approves that stopped: %s", exc.message)
                    return
        finally:
            inbox.close()

    def _client(self, entry: Any = None) -> QueueClient:
        """The connection, made on first use; one that cannot be made fails `entry`."""
        if self.client is None:
            if entry is None:
                self.client = QueueClient(self.params)
            else:
                self.client = bridge.connect(self.inbox, self.params, entry)
        return self.client

    def process(self, message: Message) -> None:
        entry = bridge.entry_from_body(
            message.value,
            instance=self.context.instance,
            params=self.params,
            run=str(self.context.run.get("run") or ""),
        )
        cancels = bridge.cancel_list(message.value)
        added = self.inbox.add(entry)
        if added:
            self.counts["received"] = self.counts.get("received", 0) + 1
        else:
            entry = self.inbox.get(entry.uid) or entry  # redelivered: carry on from its state
        try:
            self._follow()
            if cancels and (added or entry.state_reason == f"{entry.action}: nothing to queue"):
                # a redelivered stop whose cancel was done (or reported) does it not again
                self._cancel(entry, cancels)
            if self.params.mode == "auto" and entry.state == "pending":
                self._auto(entry)
            elif entry.state == "failed":
                # tried again (a retry policy, a redelivery): report the recorded refusal
                # instead of asking the server again; only a person's approve does that
                raise QueueError(entry.state_reason)
        finally:
            self._send_feedback()

    def _follow(self) -> None:
        self._end_start_up_look()
        try:
            bridge.refresh(self.inbox, self._client(), self.context.instance)
        except QueueError as exc:
            # following is best effort: the suggestion at hand still gets its own answer
            self.log.warning("cannot follow earlier items: %s", exc.message)

    def _end_start_up_look(self) -> None:
        """The first suggestion follows earlier items itself, approves that stopped included:
        the look made at start (`_recover_at_start`) asks no more, and a question of it under
        way is waited for (the server's timeout bounds it). Otherwise it could hold the
        decision lock while this suggestion follows, which then leaves a stopped approve to
        it, and the agent would hear of it only with the next suggestion."""
        if self._recovering.is_alive():
            self._stopping.set()
            self._recovering.join(self.params.timeout + 5)

    def _cancel(self, entry: Any, uids: list[str]) -> None:
        """Remove the queued items of the earlier suggestions `entry` says are not needed
        (approve mode: only say which); the line goes to the log and, for a stop, the inbox."""
        try:
            line = bridge.cancel(self.inbox, self._client(), entry, uids, params=self.params)
        except QueueError as exc:
            # the stop stays as it was: a retry or redelivery of this message tries again
            raise QueueError(
                f"the queued items of {bridge.plural(len(uids), 'earlier suggestion')} that "
                f"suggestion {entry.uid[:12]} cancels were not removed: {exc.message}"
            ) from None
        self.log.warning("suggestion %s: %s", entry.uid[:12], line)
        if entry.state == "noted":
            self.inbox.note(entry.uid, f"{entry.action}: {line}")

    def _auto(self, entry: Any) -> None:
        reason = bridge.over_budget(self.inbox, entry, self.params.budget)
        if reason is not None:
            self.inbox.set_state(entry.uid, "held", reason)
            return
        # a refusal or no answer raises: the message and the server's reason go to the error
        # stream, the inbox says failed; a person may approve it again, nothing retries blindly
        with self.inbox.deciding():
            # a person may have approved or rejected it meanwhile: their decision stands
            current = self.inbox.get(entry.uid)
            if current is not None and current.state == "pending":
                bridge.submit(self.inbox, self._client(entry), current)

    def _send_feedback(self) -> None:
        for seq, body in self.inbox.unsent():
            if seq in self._sent:
                continue
            self.emit("status", body, metadata={"kind": "plan-status", "state": body["state"]})
            self._sent.append(seq)

    def flush(self) -> None:
        # marked sent once the worker is about to acknowledge the inputs behind them; a crash
        # before this point sends them again (the agent keeps the latest state per uid)
        self.inbox.mark_sent(self._sent)
        self._sent = []
        self.states = self.inbox.state_counts(self.context.instance)

    def on_shutdown(self) -> None:
        # a question under way ends within the server's timeout; its answer is then recorded
        # before the inbox is left
        self._stopping.set()
        self._recovering.join(self.params.timeout + 5)
        if self.client is not None:
            self.client.close()
        # summary() is called after this: count the states while the inbox is open
        self.states = self.inbox.state_counts(self.context.instance)
        self.inbox.close()

    def summary(self) -> dict[str, Any]:
        return {"mode": self.params.mode, "suggestions": dict(getattr(self, "states", {}))}
