"""Helpers the tests share: no tests here. Test modules import from this package, never from each other.

Some modules here are also run as programs by the e2e tests and scripts/chaos.py (``python -m tests.support.faults``,
``python -m tests.support.crashing_worker``, ``tests.support.faulty_decoder`` as a decoder child).
"""
