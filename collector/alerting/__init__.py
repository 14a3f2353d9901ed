"""Alerting: rules, the evaluation state machine, the engine, notifiers and the outbox.

- :mod:`.rules`: Rule/Condition/Thresholds, validation, the seed's built-in defaults.
- :mod:`.evaluate`: the pure state machine (ok -> pending -> firing -> ok, hysteresis,
  severity changes within an episode, flapping).
- :mod:`.queries`: the aggregate of a rule's metric over its window, per subject.
- :mod:`.engine`: :class:`AlertEngine.tick` evaluates every enabled rule and writes
  states, episodes (system_alerts) and outbox rows in one transaction.
- :mod:`.dispatch`: :class:`Dispatcher.run_once` sends due outbox rows.
- :mod:`.notifiers`: :class:`SlackNotifier`, :class:`SmtpNotifier` (:mod:`.abc`: ``Notifier``).

What is guaranteed: a state change and the notifications it causes commit
together or not at all, so no notification is lost to a crash; each outbox
row is sent until the channel takes it, refuses it (4xx: recorded as failed),
or attempts run out; a message is sent twice only if the process dies
between a successful send and its record, and then both copies carry the same
idempotency key (email Message-ID, Slack message metadata), and with the Slack
Web API the dispatcher finds the first copy in the channel history and does
not resend.
"""
