"""Nouns and plumbing every stage shares: settings, errors and retries, hashing, documents and chunks, tasks,
the connector contract, resources, progress events, offline switches and fault points. Imports no other stage."""
