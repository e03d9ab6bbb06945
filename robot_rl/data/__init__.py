"""robot_rl.data"""
