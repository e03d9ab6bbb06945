"""robot_rl.algos"""
