"""robot_rl.safety"""
