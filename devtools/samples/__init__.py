"""Sample data: the made-up account, signed API Gateway events, events/ and the Studio Flow JSON.

May import: the template readers only.
"""
