"""robot_rl.eval"""
