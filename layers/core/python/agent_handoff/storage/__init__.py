"""DynamoDB: the only package that speaks its wire types and error codes, and the records it stores.

May import: the package's foundation (errors, masking). Never the services (agent, sms, voice,
delivery) nor wiring: AWS error codes become the domain's exceptions here.
"""
