"""Alembic migrations of the store, run by :func:`collector.store.migrate.upgrade`.

Add a migration: copy the newest file in ``versions/`` (vNNNN_what.py), give it the next
number as ``revision`` and the previous number as ``down_revision``. No
alembic.ini is needed; ``migrate.py`` configures Alembic in code.
"""
