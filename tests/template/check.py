"""Checks of template.yaml that cfn-lint cannot know: the limits this project promises.

Run by tests/run.sh with the test venv's Python: `python tests/template/check.py`.
"""

import pathlib
import sys
import unittest

import yaml

TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "template.yaml"


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (!Ref, !GetAtt, ...) as plain values."""


def _intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_Loader.add_multi_constructor("!", _intrinsic)


def template():
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


class BillingStream(unittest.TestCase):
    def setUp(self):
        events = template()["Resources"]["BillingFunction"]["Properties"]["Events"]
        self.mapping = events["Redemptions"]["Properties"]

    def test_a_poison_record_reaches_the_failure_queue_within_minutes(self):
        retries = self.mapping["MaximumRetryAttempts"]
        age = self.mapping["MaximumRecordAgeInSeconds"]
        self.assertTrue(0 <= retries <= 10, f"MaximumRetryAttempts {retries}")
        self.assertTrue(60 <= age <= 900, f"MaximumRecordAgeInSeconds {age}")
        self.assertTrue(self.mapping["BisectBatchOnFunctionError"])
        self.assertIn("ReportBatchItemFailures", self.mapping["FunctionResponseTypes"])
        destination = self.mapping["DestinationConfig"]["OnFailure"]["Destination"]
        self.assertEqual(destination, {"GetAtt": "BillingFailures.Arn"})


class StatsStream(unittest.TestCase):
    """The stats consumer sits beside billing on the assignments stream, with a mapping of its
    own (its failures never hold billing up, nor billing's it) and billing's bounds."""

    def setUp(self):
        self.function = template()["Resources"]["StatsFunction"]["Properties"]
        self.mapping = self.function["Events"]["Assignments"]["Properties"]

    def test_it_follows_the_assignments_stream_with_billings_bounds(self):
        self.assertEqual(self.mapping["Stream"], {"GetAtt": "AssignmentsTable.StreamArn"})
        retries = self.mapping["MaximumRetryAttempts"]
        age = self.mapping["MaximumRecordAgeInSeconds"]
        self.assertTrue(0 <= retries <= 10, f"MaximumRetryAttempts {retries}")
        self.assertTrue(60 <= age <= 900, f"MaximumRecordAgeInSeconds {age}")
        self.assertTrue(self.mapping["BisectBatchOnFunctionError"])
        self.assertIn("ReportBatchItemFailures", self.mapping["FunctionResponseTypes"])
        destination = self.mapping["DestinationConfig"]["OnFailure"]["Destination"]
        self.assertEqual(destination, {"GetAtt": "StatsFailures.Arn"})

    def test_it_sees_assignments_inserted_and_modified_only(self):
        import json

        patterns = [json.loads(f["Pattern"]) for f in self.mapping["FilterCriteria"]["Filters"]]
        for pattern in patterns:
            self.assertTrue(set(pattern["eventName"]) <= {"INSERT", "MODIFY"}, pattern)
            self.assertEqual(pattern["dynamodb"]["NewImage"]["entity"], {"S": ["assignment"]})

    def test_its_policy_writes_counts_and_reads_nothing(self):
        dynamodb = set()
        for policy in self.function["Policies"]:
            for statement in policy["Statement"]:
                actions = statement["Action"]
                for action in [actions] if isinstance(actions, str) else actions:
                    if action.startswith("dynamodb:"):
                        self.assertEqual(statement["Resource"], {"GetAtt": "MainTable.Arn"})
                        dynamodb.add(action)
        self.assertEqual(dynamodb, {"dynamodb:PutItem", "dynamodb:UpdateItem"})


class ApiRoutes(unittest.TestCase):
    def test_the_api_routes_are_those_of_the_openapi_document(self):
        import json

        doc = json.loads((TEMPLATE.parent / "docs" / "openapi.json").read_text())
        documented = {
            f"{method.upper()} {path}"
            for path, item in doc["paths"].items()
            for method, op in item.items()
            # /v1/files is the local server's stand-in for S3's presigned URLs.
            if method in ("get", "post", "put", "patch", "delete") and "local" not in op.get("tags", [])
        }
        routed = {
            f"{event['Properties']['Method']} {event['Properties']['Path']}"
            for resource in template()["Resources"].values()
            if resource.get("Type") == "AWS::Serverless::Function"
            for event in resource["Properties"].get("Events", {}).values()
            if event.get("Type") == "HttpApi"
        }
        self.assertEqual(documented - routed, set(), "documented but not routed by API Gateway")
        self.assertEqual(routed - documented, set(), "routed by API Gateway but not documented")


class RedemptionRoute(unittest.TestCase):
    def test_the_redemption_route_has_its_own_throttle(self):
        api = template()["Resources"]["HttpApi"]["Properties"]
        routes = api["RouteSettings"]
        self.assertIn("POST /v1/redemptions", routes)
        limits = routes["POST /v1/redemptions"]
        self.assertIn("ThrottlingRateLimit", limits)
        self.assertIn("ThrottlingBurstLimit", limits)


class FairJobs(unittest.TestCase):
    """One organization's large job must not hold up another's: see README, "Fair jobs"."""

    def setUp(self):
        self.resources = template()["Resources"]

    def jobs_mapping(self, function):
        return self.resources[function]["Properties"]["Events"]["Jobs"]["Properties"]

    def test_exports_and_key_jobs_have_queues_of_their_own(self):
        generation = self.jobs_mapping("KeyGenerationFunction")["Queue"]
        export = self.jobs_mapping("ExportFunction")["Queue"]
        self.assertEqual(generation, {"GetAtt": "GenerationJobs.Arn"})
        self.assertEqual(export, {"GetAtt": "ExportJobs.Arn"})

    def test_each_job_gets_an_invocation_of_its_own_and_nothing_caps_them(self):
        for function in ("KeyGenerationFunction", "ExportFunction"):
            mapping = self.jobs_mapping(function)
            self.assertEqual(mapping["BatchSize"], 1, function)
            self.assertNotIn("ScalingConfig", mapping, function)
            properties = self.resources[function]["Properties"]
            self.assertNotIn("ReservedConcurrentExecutions", properties, function)

    def test_the_cap_on_open_jobs_is_a_parameter_every_function_reads(self):
        parameter = template()["Parameters"]["MaxOpenJobs"]
        self.assertGreaterEqual(parameter["MinValue"], 1)
        env = template()["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["KEYPOOL_MAX_OPEN_JOBS"], {"Ref": "MaxOpenJobs"})


class Architecture(unittest.TestCase):
    """One parameter picks every function's processor: `sam build` can only build for the
    architectures whose Rust standard library it has, and the deploy must match the build."""

    def setUp(self):
        self.template = template()
        self.functions = {
            name: resource
            for name, resource in self.template["Resources"].items()
            if resource.get("Type") == "AWS::Serverless::Function"
        }

    def test_the_architecture_is_a_parameter_arm64_by_default(self):
        parameter = self.template["Parameters"]["Architecture"]
        self.assertEqual(parameter["Default"], "arm64")
        self.assertEqual(set(parameter["AllowedValues"]), {"arm64", "x86_64"})

    def test_every_function_runs_on_the_parameters_architecture(self):
        default = self.template.get("Globals", {}).get("Function", {}).get("Architectures")
        self.assertTrue(self.functions)
        for name, resource in self.functions.items():
            architectures = resource["Properties"].get("Architectures", default)
            self.assertEqual(architectures, [{"Ref": "Architecture"}], name)

    def test_every_function_is_one_binary_built_by_cargo_lambda(self):
        functions = TEMPLATE.parent / "functions"
        crates = {p.name for p in functions.iterdir() if (p / "Cargo.toml").exists()}
        built = {}
        for name, resource in self.functions.items():
            self.assertEqual(resource["Metadata"]["BuildMethod"], "rust-cargolambda", name)
            built[resource["Metadata"]["BuildProperties"]["Binary"]] = name
        self.assertEqual(set(built), crates)


class AuditIsAppendOnly(unittest.TestCase):
    """No function may change or remove an audit record: on the audit table (and its
    indexes) a policy grants at most PutItem (every put is conditioned on
    attribute_not_exists in the code) and the readers' Query."""

    ALLOWED = {"dynamodb:PutItem", "dynamodb:Query"}

    @staticmethod
    def names_audit(resource):
        return "AuditTable" in repr(resource) or resource == "*"

    def test_no_policy_updates_or_deletes_audit_records(self):
        resources = template()["Resources"]
        self.assertIn("AuditTable", resources)
        granted = set()
        for name, resource in resources.items():
            policies = resource.get("Properties", {}).get("Policies", [])
            for policy in policies if isinstance(policies, list) else []:
                if not isinstance(policy, dict):
                    continue
                for statement in policy.get("Statement", []):
                    actions = statement.get("Action", [])
                    actions = [actions] if isinstance(actions, str) else actions
                    targets = statement.get("Resource", [])
                    targets = targets if isinstance(targets, list) else [targets]
                    if statement.get("Effect") != "Allow":
                        continue
                    if not any(self.names_audit(t) for t in targets):
                        continue
                    for action in actions:
                        if action.startswith("dynamodb:") or action in ("*", "dynamodb:*"):
                            self.assertIn(action, self.ALLOWED, f"{name} may {action} on the audit")
                            granted.add(action)
        self.assertEqual(granted, self.ALLOWED, "someone writes and someone reads the audit")

    def test_records_expire_by_ttl(self):
        table = template()["Resources"]["AuditTable"]["Properties"]
        self.assertEqual(table["TimeToLiveSpecification"],
                         {"AttributeName": "expires_at_epoch", "Enabled": True})


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
