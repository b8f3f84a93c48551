"""sources.kinesis"""
