"""robot_rl.config"""
