"""The local stack (`make local`): the template's functions behind a loopback API Gateway, streams and moto.

May import: fakes, samples and the template readers at devtools' top. Never deployed.
"""
