"""The state store (SQLAlchemy 2): what was seen, what was done, who is running. SQLite or PostgreSQL."""
