"""Development tools: template reading, signed sample events, loopback fakes of Twilio's side.

Never deployed; the tests, the sample-event generator and the local stack share them.
"""
