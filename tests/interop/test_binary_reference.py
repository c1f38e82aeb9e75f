"""The committed binary-protocol reference table (tests/data/binary_reference.txt) is still what
the reference memcached answers: it is re-recorded and compared, so that the Rust tests which
replay it never drift from the real server."""

import contextlib
import io
import os
import shutil

import pytest

import binary_reference

TABLE = os.path.join(os.path.dirname(__file__), "..", "data", "binary_reference.txt")


def body(text):
    # The header comments name the memcached version; the rest must match exactly.
    return [line for line in text.splitlines() if not line.startswith("#")]


@pytest.mark.skipif(shutil.which(binary_reference.MEMCACHED) is None and
                    not os.path.exists(binary_reference.MEMCACHED),
                    reason="reference memcached is not installed")
def test_reference_table_is_current():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        binary_reference.main()
    with open(TABLE) as f:
        committed = f.read()
    assert body(out.getvalue()) == body(committed), (
        "memcached's replies changed: regenerate with "
        "python3 tests/interop/binary_reference.py > tests/data/binary_reference.txt")
