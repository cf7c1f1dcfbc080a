print("synthd")
