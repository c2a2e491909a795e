#!/usr/bin/env python3
"""Run one Eclipse Paho interoperability suite (paho.mqtt.testing, ``interoperability/``)
against a broker and print its counts.

    paho_interop.py SUITE_DIR HOST PORT 3.1.1|5.0 [TEST_NAME...]

``client_test.py`` (3.1.1) and ``client_test5.py`` (5.0) are unittest modules meant to be run
as scripts; their ``__main__`` blocks set module globals (host, port, topics) that the tests
read. This imports the module, sets the same globals, and runs its ``Test`` case, so that no
command line is shared with unittest. Prints one ``RESULT`` line and the failing tests.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import unittest

#: Seconds one test may take: some loop until the broker does what they expect (5.0
#: test_flow_control2 waits for a DISCONNECT 0x93 that Mosquitto never sends).
TEST_TIMEOUT = int(os.environ.get("PAHO_TEST_TIMEOUT", "120"))


class _TimedResult(unittest.TextTestResult):
    """Fails a test that runs longer than TEST_TIMEOUT (SIGALRM interrupts it)."""

    def startTest(self, test: unittest.TestCase) -> None:
        signal.alarm(TEST_TIMEOUT)
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        signal.alarm(0)
        super().stopTest(test)


def _timed_out(signum: int, frame: object) -> None:
    raise TimeoutError(f"test still running after {TEST_TIMEOUT} s")


def main() -> int:
    suite_dir, host, port, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sys.path.insert(0, suite_dir)
    name = "client_test" if version == "3.1.1" else "client_test5"
    module = importlib.import_module(name)
    module.host, module.port = host, port
    module.nosubscribe_topics = ("test/nosubscribe",)
    if version == "3.1.1":
        module.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
        module.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
    else:
        prefix = module.topic_prefix = "client_test5/"
        module.topics = [prefix + t for t in ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")]
        module.wildtopics = [prefix + t for t in ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")]
    logging.getLogger().setLevel(logging.ERROR)
    names = sys.argv[5:]
    if names:
        tests = unittest.TestSuite(module.Test(name) for name in names)
    else:
        tests = unittest.defaultTestLoader.loadTestsFromTestCase(module.Test)
    signal.signal(signal.SIGALRM, _timed_out)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stderr, resultclass=_TimedResult)
    result = runner.run(tests)
    bad = [test.id().rsplit(".", 1)[-1] for test, _ in result.failures + result.errors]
    passed = result.testsRun - len(bad)
    print(f"RESULT suite={version} run={result.testsRun} passed={passed} failed={','.join(bad) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
