"""robot_rl.cli"""
