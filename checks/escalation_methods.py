"""The catalogue of privilege-escalation methods: data, maintained here (pure, no imports
beyond the standard library).

Every method cloudsplaining 0.9.1 lists (same name, same actions; a test keeps them in
step) plus service paths documented by public catalogues of AWS escalation paths
(pathfinding.cloud, NCC Group's Principal Mapper, Rhino Security Labs' list). Each entry
says which actions it needs (all of them), what must exist for it to work, one sentence a
person reads in a DM, and where it is documented.

`requires` names the prerequisite, decided against the snapshot by `checks.effective`:

    other-user        another IAM user the target action reaches (you become that user)
    user              an IAM user the target action reaches (yourself included)
    group             an IAM group the target action reaches
    policy            a customer managed policy the target action reaches
    role              an IAM role the target action reaches
    bounded-user/-role  a user or role with a permissions boundary the target action reaches
    pass:<service>    a role that iam:PassRole reaches and that <service> may assume
    runs-as:<service> an existing <service> resource running with a role (a function, a
                      stack, an instance profile...). Steward inventories IAM only, so it
                      stands in a role that <service> may assume: without one no such
                      resource can hold a role (latent); with one it is assumed to exist
                      (exploitable, and the finding says it was assumed)

`target` is the action whose resource element decides what the method reaches (its other
actions are only needed somewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

RHINO = "https://rhinosecuritylabs.com/aws/aws-privilege-escalation-methods-mitigation/"
CLOUDSPLAINING = "https://github.com/salesforce/cloudsplaining (0.9.1 PRIVILEGE_ESCALATION_METHODS)"
PATHFINDING = "https://pathfinding.cloud"
PMAPPER = "https://github.com/nccgroup/PMapper (edge checkers)"


@dataclass(frozen=True)
class Method:
    name: str
    actions: frozenset[str]  # lower-case
    target: str  # lower-case action whose resource decides the reach
    requires: str
    explanation: str  # "can <explanation>"
    reference: str
    source: str = "cloudsplaining"
    others: tuple[str, ...] = ()  # the actions besides the target, sorted


def _m(
    name: str,
    actions: str,
    requires: str,
    explanation: str,
    *,
    target: str | None = None,
    reference: str = RHINO,
    source: str = "cloudsplaining",
) -> Method:
    acts = tuple(a.strip().lower() for a in actions.split(","))
    aim = (target or acts[0]).lower()
    others = tuple(sorted(set(acts) - {aim}))
    return Method(name, frozenset(acts), aim, requires, explanation, reference, source, others)


EC2 = "ec2.amazonaws.com"
LAMBDA = "lambda.amazonaws.com"
CFN = "cloudformation.amazonaws.com"
GLUE = "glue.amazonaws.com"
ECS = "ecs-tasks.amazonaws.com"
SAGEMAKER = "sagemaker.amazonaws.com"
CODEBUILD = "codebuild.amazonaws.com"

METHODS: tuple[Method, ...] = (
    # --- IAM itself (cloudsplaining) ---------------------------------------------------
    _m("CreateAccessKey", "iam:CreateAccessKey", "other-user",
       "create an access key for another user and act as that user"),
    _m("CreateLoginProfile", "iam:CreateLoginProfile", "other-user",
       "set a console password on another user and sign in as that user"),
    _m("UpdateLoginProfile", "iam:UpdateLoginProfile", "other-user",
       "change another user's console password and sign in as that user"),
    _m("AddUserToGroup", "iam:AddUserToGroup", "group",
       "add a user to a more privileged group"),
    _m("CreateNewPolicyVersion", "iam:CreatePolicyVersion", "policy",
       "write a new default version of a managed policy, granting anything"),
    _m("SetExistingDefaultPolicyVersion", "iam:SetDefaultPolicyVersion", "policy",
       "switch a managed policy to an older, broader version"),
    _m("AttachUserPolicy", "iam:AttachUserPolicy", "user",
       "attach any managed policy (AdministratorAccess) to a user"),
    _m("AttachGroupPolicy", "iam:AttachGroupPolicy", "group",
       "attach any managed policy (AdministratorAccess) to a group"),
    _m("AttachRolePolicy", "iam:AttachRolePolicy", "role",
       "attach any managed policy (AdministratorAccess) to a role"),
    _m("PutUserPolicy", "iam:PutUserPolicy", "user",
       "write an inline policy granting anything to a user"),
    _m("PutGroupPolicy", "iam:PutGroupPolicy", "group",
       "write an inline policy granting anything to a group"),
    _m("PutRolePolicy", "iam:PutRolePolicy", "role",
       "write an inline policy granting anything to a role"),
    _m("UpdateRolePolicyToAssumeIt", "iam:UpdateAssumeRolePolicy", "role",
       "rewrite a role's trust policy so that it can assume the role"),
    _m("CreateAndRotateAccessKey", "iam:CreateAccessKey,iam:DeleteAccessKey", "other-user",
       "replace another user's access keys with its own"),
    _m("AttachUserPolicyThenCreateAccessKey", "iam:AttachUserPolicy,iam:CreateAccessKey",
       "other-user", "grant another user anything and take an access key for it"),
    _m("CreatePolicyVersionThenAssumeRole", "iam:CreatePolicyVersion,sts:AssumeRole", "policy",
       "rewrite a role's managed policy, then assume that role"),
    _m("PutUserPolicyThenCreateAccessKey", "iam:PutUserPolicy,iam:CreateAccessKey", "other-user",
       "grant another user anything inline and take an access key for it"),
    _m("AttachRolePolicyThenUpdateAssumeRolePolicy",
       "iam:AttachRolePolicy,iam:UpdateAssumeRolePolicy", "role",
       "attach any policy to a role and make the role trust it"),
    _m("CreatePolicyVersionThenUpdateAssumeRolePolicy",
       "iam:CreatePolicyVersion,iam:UpdateAssumeRolePolicy", "policy",
       "rewrite a role's managed policy and make the role trust it"),
    _m("PutRolePolicyThenUpdateAssumeRolePolicy",
       "iam:PutRolePolicy,iam:UpdateAssumeRolePolicy", "role",
       "grant a role anything inline and make the role trust it"),
    # --- Passing a role to a new compute resource (cloudsplaining) ----------------------
    _m("CreateEC2WithExistingIP", "iam:PassRole,ec2:RunInstances", f"pass:{EC2}",
       "start an EC2 instance with a privileged instance profile and use its role"),
    _m("PassExistingRoleToNewEC2SpotInstance", "iam:PassRole,ec2:RequestSpotInstances",
       f"pass:{EC2}", "start a spot instance with a privileged role and use it"),
    _m("PassExistingRoleToNewLambdaThenInvoke",
       "iam:PassRole,lambda:CreateFunction,lambda:InvokeFunction", f"pass:{LAMBDA}",
       "create a Lambda function with a privileged role and run it"),
    _m("PassExistingRoleToNewLambdaThenTriggerWithNewDynamo",
       "iam:PassRole,lambda:CreateFunction,lambda:CreateEventSourceMapping,"
       "dynamodb:CreateTable,dynamodb:PutItem", f"pass:{LAMBDA}",
       "create a Lambda function with a privileged role and trigger it from a new table"),
    _m("PassExistingRoleToNewLambdaThenTriggerWithExistingDynamo",
       "iam:PassRole,lambda:CreateFunction,lambda:CreateEventSourceMapping", f"pass:{LAMBDA}",
       "create a Lambda function with a privileged role and trigger it from a table"),
    _m("PassExistingRoleToNewLambdaThenAddPermission",
       "iam:PassRole,lambda:CreateFunction,lambda:AddPermission", f"pass:{LAMBDA}",
       "create a Lambda function with a privileged role and let itself invoke it"),
    _m("PassExistingRoleToNewGlueDevEndpoint", "iam:PassRole,glue:CreateDevEndpoint",
       f"pass:{GLUE}", "create a Glue dev endpoint with a privileged role and log in to it"),
    _m("PassExistingRoleToNewGlueJobThenRun", "iam:PassRole,glue:CreateJob,glue:StartJobRun",
       f"pass:{GLUE}", "create and run a Glue job with a privileged role"),
    _m("PassExistingRoleToNewGlueJobViaTrigger", "iam:PassRole,glue:CreateJob,glue:CreateTrigger",
       f"pass:{GLUE}", "create a Glue job with a privileged role and trigger it"),
    _m("PassExistingRoleToUpdatedGlueJobThenRun", "iam:PassRole,glue:UpdateJob,glue:StartJobRun",
       f"pass:{GLUE}", "give a Glue job a privileged role and run it"),
    _m("PassExistingRoleToUpdatedGlueJobViaTrigger",
       "iam:PassRole,glue:UpdateJob,glue:CreateTrigger", f"pass:{GLUE}",
       "give a Glue job a privileged role and trigger it"),
    _m("PassExistingRoleToCloudFormation", "iam:PassRole,cloudformation:CreateStack",
       f"pass:{CFN}", "create a CloudFormation stack that runs as a privileged role"),
    _m("PassExistingRoleToNewCloudFormationStackSet",
       "iam:PassRole,cloudformation:CreateStackSet,cloudformation:CreateStackInstances",
       f"pass:{CFN}", "create a stack set that runs as a privileged role"),
    _m("PassRoleToUpdateCloudFormationStackSet", "iam:PassRole,cloudformation:UpdateStackSet",
       f"pass:{CFN}", "update a stack set to run as a privileged role"),
    _m("PassExistingRoleToNewDataPipeline", "iam:PassRole,datapipeline:CreatePipeline",
       "pass:datapipeline.amazonaws.com", "create a Data Pipeline that runs as a privileged role"),
    _m("PassExistingRoleToNewAppRunnerService", "iam:PassRole,apprunner:CreateService",
       "pass:tasks.apprunner.amazonaws.com", "create an App Runner service with a privileged role"),
    _m("PassExistingRoleToNewBedrockCodeInterpreter",
       "iam:PassRole,bedrock-agentcore:CreateCodeInterpreter,"
       "bedrock-agentcore:StartCodeInterpreterSession,bedrock-agentcore:InvokeCodeInterpreter",
       "pass:bedrock-agentcore.amazonaws.com",
       "create a Bedrock code interpreter with a privileged role and run code in it"),
    _m("PassExistingRoleToNewCodeBuildProjectThenBuild",
       "iam:PassRole,codebuild:CreateProject,codebuild:StartBuild", f"pass:{CODEBUILD}",
       "create a CodeBuild project with a privileged role and build it"),
    _m("PassExistingRoleToNewCodeBuildProjectThenBuildBatch",
       "iam:PassRole,codebuild:CreateProject,codebuild:StartBuildBatch", f"pass:{CODEBUILD}",
       "create a CodeBuild project with a privileged role and batch-build it"),
    _m("PassExistingRoleToNewECSClusterServiceTask",
       "iam:PassRole,ecs:CreateCluster,ecs:RegisterTaskDefinition,ecs:CreateService",
       f"pass:{ECS}", "run an ECS service whose tasks use a privileged role"),
    _m("PassExistingRoleToNewECSClusterRunTask",
       "iam:PassRole,ecs:CreateCluster,ecs:RegisterTaskDefinition,ecs:RunTask", f"pass:{ECS}",
       "run an ECS task with a privileged role"),
    _m("PassExistingRoleToNewECSService",
       "iam:PassRole,ecs:RegisterTaskDefinition,ecs:CreateService", f"pass:{ECS}",
       "run an ECS service whose tasks use a privileged role"),
    _m("PassExistingRoleToNewECSTaskViaRunTask",
       "iam:PassRole,ecs:RegisterTaskDefinition,ecs:RunTask", f"pass:{ECS}",
       "run an ECS task with a privileged role"),
    _m("PassExistingRoleToNewECSTaskViaStartTask",
       "iam:PassRole,ecs:RegisterTaskDefinition,ecs:StartTask", f"pass:{ECS}",
       "start an ECS task with a privileged role"),
    _m("PassExistingRoleToNewSageMakerNotebookInstance",
       "iam:PassRole,sagemaker:CreateNotebookInstance", f"pass:{SAGEMAKER}",
       "create a SageMaker notebook with a privileged role and open it"),
    _m("PassExistingRoleToNewSageMakerTrainingJob", "iam:PassRole,sagemaker:CreateTrainingJob",
       f"pass:{SAGEMAKER}", "run a SageMaker training job with a privileged role"),
    _m("PassExistingRoleToNewSageMakerProcessingJob",
       "iam:PassRole,sagemaker:CreateProcessingJob", f"pass:{SAGEMAKER}",
       "run a SageMaker processing job with a privileged role"),
    # --- Taking over an existing resource that runs as a role (cloudsplaining) ----------
    _m("UpdateExistingGlueDevEndpoint", "glue:UpdateDevEndpoint", f"runs-as:{GLUE}",
       "add its SSH key to an existing Glue dev endpoint and use its role"),
    _m("EditExistingLambdaFunctionWithRole", "lambda:UpdateFunctionCode", f"runs-as:{LAMBDA}",
       "replace the code of a Lambda function that runs as a role"),
    _m("UpdateAndInvokeLambdaFunction", "lambda:UpdateFunctionCode,lambda:InvokeFunction",
       f"runs-as:{LAMBDA}", "replace a Lambda function's code and run it as its role"),
    _m("UpdateLambdaFunctionAndAddPermission", "lambda:UpdateFunctionCode,lambda:AddPermission",
       f"runs-as:{LAMBDA}", "replace a Lambda function's code and let itself invoke it"),
    _m("ExecuteCloudFormationChangeSet",
       "cloudformation:CreateChangeSet,cloudformation:ExecuteChangeSet", f"runs-as:{CFN}",
       "run a change set on a stack that has a service role"),
    _m("ModifyEC2InstanceUserDataThenRestart",
       "ec2:ModifyInstanceAttribute,ec2:StopInstances,ec2:StartInstances",
       "runs-as:" + EC2, "rewrite an instance's user data and restart it to use its role"),
    _m("ModifyExistingEC2LaunchTemplate",
       "ec2:CreateLaunchTemplateVersion,ec2:ModifyLaunchTemplate", "runs-as:" + EC2,
       "change a launch template so new instances run its code with their role"),
    _m("EC2InstanceConnectSendSSHPublicKey",
       "ec2-instance-connect:SendSSHPublicKey,ec2:DescribeInstances", "runs-as:" + EC2,
       "push an SSH key to an instance with a profile and use its role"),
    _m("ECSExecuteCommandOnRunningTask", "ecs:ExecuteCommand,ecs:DescribeTasks",
       f"runs-as:{ECS}", "open a shell in a running ECS task and use its role"),
    _m("CreatePresignedSageMakerNotebookUrl", "sagemaker:CreatePresignedNotebookInstanceUrl",
       f"runs-as:{SAGEMAKER}", "open an existing SageMaker notebook and use its role"),
    _m("UpdateSageMakerNotebookLifecycleConfig",
       "sagemaker:CreateNotebookInstanceLifecycleConfig,sagemaker:StopNotebookInstance,"
       "sagemaker:UpdateNotebookInstance,sagemaker:StartNotebookInstance",
       f"runs-as:{SAGEMAKER}", "run its code in a notebook's start-up script as the notebook role"),
    _m("AccessExistingBedrockCodeInterpreterSession",
       "bedrock-agentcore:StartCodeInterpreterSession,bedrock-agentcore:InvokeCodeInterpreter",
       "runs-as:bedrock-agentcore.amazonaws.com",
       "run code in an existing Bedrock code interpreter as its role"),
    # --- Beyond cloudsplaining (pathfinding.cloud, Principal Mapper) --------------------
    _m("UpdateExistingCloudFormationStack", "cloudformation:UpdateStack", f"runs-as:{CFN}",
       "update a stack that has a service role, so the template runs with that role",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("PassRoleToUpdateCloudFormationStack", "iam:PassRole,cloudformation:UpdateStack",
       f"pass:{CFN}", "give a stack a privileged service role and update it",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("PassRoleToCloudFormationChangeSet",
       "iam:PassRole,cloudformation:CreateChangeSet,cloudformation:ExecuteChangeSet",
       f"pass:{CFN}", "run a change set with a privileged service role",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("SSMSendCommandToInstanceWithProfile", "ssm:SendCommand", "runs-as:" + EC2,
       "run commands on an instance with a profile and use its role",
       reference=PMAPPER, source="Principal Mapper"),
    _m("SSMStartSessionOnInstanceWithProfile", "ssm:StartSession", "runs-as:" + EC2,
       "open a shell on an instance with a profile and use its role",
       reference=PMAPPER, source="Principal Mapper"),
    _m("EC2InstanceConnectToInstanceWithProfile", "ec2-instance-connect:SendSSHPublicKey",
       "runs-as:" + EC2, "push an SSH key to an instance with a profile and use its role",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("UpdateLambdaFunctionConfigurationWithRole",
       "iam:PassRole,lambda:UpdateFunctionConfiguration", f"pass:{LAMBDA}",
       "give an existing Lambda function a privileged role",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("StartCodeBuildWithBuildspecOverride", "codebuild:StartBuild", f"runs-as:{CODEBUILD}",
       "start a CodeBuild project's build with its own buildspec, as the project's role",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("PassRoleToUpdatedCodeBuildProject",
       "iam:PassRole,codebuild:UpdateProject,codebuild:StartBuild", f"pass:{CODEBUILD}",
       "give a CodeBuild project a privileged role and build it",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("PassRoleToNewAutoScalingLaunchConfiguration",
       "iam:PassRole,autoscaling:CreateLaunchConfiguration,autoscaling:CreateAutoScalingGroup",
       f"pass:{EC2}", "launch instances with a privileged profile through Auto Scaling",
       reference=PMAPPER, source="Principal Mapper"),
    _m("DeleteRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary", "bounded-role",
       "remove the permissions boundary that limits a role",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("DeleteUserPermissionsBoundary", "iam:DeleteUserPermissionsBoundary", "bounded-user",
       "remove the permissions boundary that limits a user",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("PutRolePermissionsBoundary", "iam:PutRolePermissionsBoundary", "bounded-role",
       "replace a role's permissions boundary with a broader one",
       reference=PATHFINDING, source="pathfinding.cloud"),
    _m("PutUserPermissionsBoundary", "iam:PutUserPermissionsBoundary", "bounded-user",
       "replace a user's permissions boundary with a broader one",
       reference=PATHFINDING, source="pathfinding.cloud"),
)

BY_NAME: dict[str, Method] = {m.name: m for m in METHODS}
# Every action some method needs (lower-case), the universe escalation analysis looks at.
ACTIONS: frozenset[str] = frozenset(a for m in METHODS for a in m.actions)
