usage: idle_conns.py [-h] [--host HOST] --port PORT [--count COUNT]
                     [--path PATH] [--window WINDOW] [--timeout TIMEOUT]
                     [--hold HOLD]
idle_conns.py: error: argument --port: expected one argument
