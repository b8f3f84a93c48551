"""leases.dynamodb"""
