"""Assay's command line (`assay`). The work itself lives in pipeline/, connectors/ and flows/."""

import pipeline as _pipeline  # noqa: F401  (switches every library to offline mode first)
