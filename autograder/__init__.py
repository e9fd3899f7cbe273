"""The course's autograder: nbgrader for the gradebook, a sandbox for the code, one CSV with reasons."""
