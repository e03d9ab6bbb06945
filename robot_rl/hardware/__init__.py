"""robot_rl.hardware"""
