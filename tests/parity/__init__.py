"""Checks of the adversarial-stage parity vectors, one function per reference ``kind``.

Each ``CHECKS`` maps a ``kind`` (the field every file of ``../shared/reference/official_gan`` carries) to a
function that takes the loaded reference dict and asserts our implementation reproduces it.
"""
