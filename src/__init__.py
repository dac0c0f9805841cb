"""Digit Recognizer submission package."""
