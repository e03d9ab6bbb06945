"""robot_rl.sim"""
