"""robot_rl.teleop"""
