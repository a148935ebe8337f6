"""Mask2Former head: pixel decoder, transformer decoder, matcher, criterion."""
