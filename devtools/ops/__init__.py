"""Operator commands against a deployed stack: `make configure`, `make redrive`.

May import: the core package and the standard library; they use the operator's own AWS credentials.
"""
