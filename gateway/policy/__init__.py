"""Sending rules, pure: message classes, quiet hours, opt-out keywords, caps (no I/O).

The accept pipeline reads what a rule needs from the store in its own batch and passes it in;
nothing here opens a file or a socket or reads the clock.
"""
