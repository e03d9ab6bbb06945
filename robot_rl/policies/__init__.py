"""robot_rl.policies"""
