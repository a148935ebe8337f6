"""The ``ces`` command line (click): parses arguments, calls core/train, prints."""
