"""dead_letter"""
