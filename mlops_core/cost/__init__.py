"""FinOps: what a deployment costs, estimated from prices and measured by AWS.

prices.py     price books: the AWS Price List API, else the shipped table
estimate.py   the cost model: a workload and a price book -> a monthly estimate
actual.py     the bill: Cost Explorer, grouped by the cost allocation tags
requests.py   request counts: the load balancer's RequestCount in CloudWatch
"""
