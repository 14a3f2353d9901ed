"""Alerting: rules, the evaluation state machine, the engine, notifiers and the outbox.

- :mod:`.rules`: Rule/Condition/Thresholds, validation, the seed's built-in defaults.
- :mod:`.evaluate`: the pure state machine (ok -> pending -> firing -> ok, hysteresis,
  severity changes within an episode, flapping).
- :mod:`.queries`: the aggregate of a rule's metric over its window, per subject.
- :mod:`.engine`: :class:`AlertEngine.tick` evaluates every enabled rule and writes
  states, episodes (system_alerts) and outbox rows in one transaction.
- :mod:`.dispatch`: :class:`Dispatcher.run_once` sends due outbox rows.
- :mod:`.silencing`: what the dispatcher does with a row a silence covers.
- :mod:`.notifiers`: :class:`SlackNotifier`, :class:`SmtpNotifier` (:mod:`.abc`: ``Notifier``).

What is guaranteed: a state change and the notifications it causes commit
together or not at all, so no notification is lost to a crash; each outbox
row is sent until the channel takes it, refuses it (4xx: recorded as failed),
or attempts run out; a message is sent twice only if the process dies
between a successful send and its record, and then both copies carry the same
idempotency key (email Message-ID, Slack message metadata), and with the Slack
Web API the dispatcher finds the first copy in the channel history and does
not resend.

Silences mute notifications, never evaluation. A notification whose
(dealer, rule, labels) an active silence covers when it is due is held: not
sent, not dropped. When the silence ends (or is deleted) and the episode is
still firing, the held firing notice is sent then, once. When the episode was
resolved during the silence and its firing never reached the channel, its
held rows are dropped (recorded as failed, reason ``silenced: ...``): there is
nothing to resolve. A resolved whose firing had been sent before the silence
is sent when the silence ends. Holds live in the outbox rows, so a dispatcher
restart changes nothing.
"""
