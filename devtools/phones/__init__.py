"""The customer's side: an SMS phone and a caller that sign every request as Twilio does.

May import: samples, fakes, local and the template readers.
"""
