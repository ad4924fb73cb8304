"""Property test over mutated bundles (the default-suite slice of ``make fuzz``).

Hypothesis draws a mutation class and a seed; the mutator in ``tests/reliability`` builds
the mutated copy of the embedded default bundle and says, by construction, whether it is
still valid. Opening it on ONNX Runtime, editing a photo and verifying it must then give a
typed ``PocketganError`` (broken bundle) or the unmutated bundle's behaviour (harmless
mutation): never an untyped exception, an accepted broken bundle, or a wrong picture.
Classes that may hang a naive reader (named pipes, a 64 MiB manifest) or crash a native
library (ExecuTorch programs) run only in ``make fuzz``, in its subprocess pool.
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketgan.runtime import default_bundle_path, verify_bundle
from reliability.bundles import FAILURES, REGISTRY, Fuzzer
from reliability.cases import CASES_DIR, SOURCES_DIR

IN_PROCESS = sorted(name for name, (_, sources, _, safe) in REGISTRY.items() if safe and "onnx" in sources)


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(default_bundle_path(), root / SOURCES_DIR / "onnx")
    (root / CASES_DIR).mkdir()
    yield Fuzzer(root)
    verify_bundle(root / SOURCES_DIR / "onnx")  # no case wrote through a hardlink into its source


def test_the_property_covers_every_mutation_family():
    # the property below only means something if it covers the manifest, path and content classes
    assert {"manifest", "path", "content", "valid"} <= {name.split(".")[0] for name in IN_PROCESS}
    assert len(IN_PROCESS) >= 30


@settings(max_examples=250, deadline=None, database=None, derandomize=True)
@given(cls=st.sampled_from(IN_PROCESS), index=st.integers(0, 2**31 - 1))
def test_mutated_bundle_is_refused_with_a_typed_error_or_works(fuzzer, cls, index):
    result = fuzzer.run_case(index, cls, "onnx")
    assert result["outcome"] not in FAILURES, (
        f"{cls} ({result['detail']}): {result['outcome']}; open+edit {result['open']} {result['open_error']!r}, "
        f"verify {result['verify']} {result['verify_error']!r}"
    )
